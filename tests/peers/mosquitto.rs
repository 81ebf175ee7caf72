//! The MQTT test peer: a real mosquitto broker on a free loopback port with a generated
//! config (persistence on, so a stopped and restarted broker keeps sessions and queued
//! messages), test certificates made with the `openssl` CLI, and mosquitto's own clients
//! (`mosquitto_sub`, `mosquitto_pub`, `mosquitto_rr`) as the independent other side.
//! Include with `#[path = "peers/mosquitto.rs"] mod mosquitto;`. Children die on drop.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Test certificates: a CA, a server certificate for 127.0.0.1/localhost, a client one.
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (scripts/test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    /// Generates everything under `dir` (EC P-256 keys, valid for two days).
    pub fn generate(dir: &Path) -> Certs {
        fs::create_dir_all(dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=edgerec test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir, &ca);
        for (name, cn, ext) in [
            (
                "server",
                "/CN=localhost",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "/CN=e2e", "extendedKeyUsage=clientAuth\n"),
        ] {
            let mut req = vec!["req"];
            req.extend(ec);
            let (key, csr, pem, extf) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            req.extend(["-keyout", &key, "-out", &csr, "-subj", cn]);
            openssl(dir, &req);
            fs::write(dir.join(&extf), ext).unwrap();
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    &extf,
                ],
            );
        }
        Certs {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}

/// A mosquitto broker. `stop` + `start_again` keep its port and persisted state.
pub struct Broker {
    pub port: u16,
    pub dir: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
    pub tls: bool,
}

impl Broker {
    /// A plain broker, anonymous clients allowed.
    pub fn start(dir: &Path) -> Broker {
        Broker::start_with(dir, None)
    }

    /// A TLS broker that requires a client certificate signed by `certs.ca`.
    pub fn start_mtls(dir: &Path, certs: &Certs) -> Broker {
        Broker::start_with(dir, Some(certs))
    }

    /// A plain broker that admits only `user` with `password` (a password file made by
    /// `mosquitto_passwd`).
    pub fn start_with_password(dir: &Path, user: &str, password: &str) -> Broker {
        let bdir = dir.join("broker");
        fs::create_dir_all(&bdir).unwrap();
        let file = bdir.join("passwd");
        let out = Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&file)
            .args([user, password])
            .output()
            .expect("run mosquitto_passwd");
        assert!(
            out.status.success(),
            "mosquitto_passwd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let extra = format!("allow_anonymous false\npassword_file {}\n", file.display());
        Broker::start_conf(dir, None, &extra)
    }

    fn start_with(dir: &Path, certs: Option<&Certs>) -> Broker {
        Broker::start_conf(dir, certs, "allow_anonymous true\n")
    }

    fn start_conf(dir: &Path, certs: Option<&Certs>, auth: &str) -> Broker {
        let dir = dir.join("broker");
        fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        // QoS 0 messages (telemetry) are queued for persistent subscribers that are away,
        // so a test's subscriber restarting with the broker misses none.
        let mut conf = format!(
            "user {}\nlistener {port} 127.0.0.1\n{auth}persistence true\npersistence_location {}/\nautosave_interval 1\nqueue_qos0_messages true\nlog_dest file {}\nlog_type all\n",
            // Run as ourselves: as root, mosquitto would switch to the `mosquitto` user,
            // which cannot write the persistence file or log here.
            whoami(),
            dir.display(),
            dir.join("mosquitto.log").display()
        );
        if let Some(c) = certs {
            conf += &format!(
                "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\n",
                c.ca.display(),
                c.server_cert.display(),
                c.server_key.display()
            );
        }
        let path = dir.join("mosquitto.conf");
        fs::write(&path, conf).unwrap();
        let mut b = Broker {
            port,
            dir,
            conf: path,
            child: None,
            tls: certs.is_some(),
        };
        b.start_again();
        b
    }

    /// (Re)starts mosquitto with the same config, and waits until it accepts connections.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (scripts/test-deps.sh installs it)");
        self.child = Some(child);
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "mosquitto did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops mosquitto cleanly (it saves its persistent state).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!(
            "{}://127.0.0.1:{}",
            if self.tls { "mqtts" } else { "mqtt" },
            self.port
        )
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Connection arguments for mosquitto's clients.
    pub fn client_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
        ]
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn mosquitto_bin() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

/// `mosquitto_sub -v` on `topic`, every line kept. With `session` it uses a persistent
/// session (`-c -i ID`, QoS 1) and restarts itself when it exits (the broker went away), so
/// messages queued by the broker while it was away are still received.
pub struct Sub {
    lines: Arc<Mutex<Vec<String>>>,
    child: Arc<Mutex<Option<Child>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Lines are `topic TAB correlation-data TAB payload` (MQTT 5, [`Sub::start_v5`]).
    v5: bool,
}

impl Sub {
    pub fn start(args: &[String], topic: &str, session: Option<&str>) -> Sub {
        let mut cmd_args: Vec<String> = args.to_vec();
        cmd_args.extend([
            "-v".into(),
            "-q".into(),
            "1".into(),
            "-t".into(),
            topic.into(),
        ]);
        if let Some(id) = session {
            cmd_args.extend(["-c".into(), "-i".into(), id.into()]);
        }
        let sub = Sub::spawn(cmd_args, false);
        // Give it a moment to subscribe.
        std::thread::sleep(Duration::from_millis(300));
        sub
    }

    /// An MQTT 5 `mosquitto_sub` on `topics` that keeps each message's correlation data
    /// (`-F '%t\t%D\t%p'`). It returns once subscribed: messages published to `probe`
    /// (which must match one of `topics`) until one comes back.
    pub fn start_v5(args: &[String], topics: &[&str], probe: &str) -> Sub {
        let mut cmd_args: Vec<String> = args.to_vec();
        cmd_args.extend(["-V", "mqttv5", "-q", "1", "-F", "%t\t%D\t%p"].map(String::from));
        for t in topics {
            cmd_args.extend(["-t".to_string(), t.to_string()]);
        }
        let sub = Sub::spawn(cmd_args, true);
        let t = Instant::now();
        loop {
            publish(args, probe, "probe", &[]);
            if sub.wait(Duration::from_secs(1), |m| {
                m.iter().any(|(t, _)| t == probe)
            }) {
                return sub;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "mosquitto_sub never subscribed to {topics:?}"
            );
        }
    }

    fn spawn(cmd_args: Vec<String>, v5: bool) -> Sub {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let child: Arc<Mutex<Option<Child>>> = Arc::new(Mutex::new(None));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (l, c, s) = (lines.clone(), child.clone(), stop.clone());
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = ready.clone();
        std::thread::spawn(move || loop {
            if s.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let spawned = Command::new("mosquitto_sub")
                .args(&cmd_args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn();
            let Ok(mut ch) = spawned else {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            };
            let out = ch.stdout.take().unwrap();
            *c.lock().unwrap() = Some(ch);
            r.store(true, std::sync::atomic::Ordering::SeqCst);
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(x) => l.lock().unwrap().push(x),
                    Err(_) => break,
                }
            }
            if let Some(mut ch) = c.lock().unwrap().take() {
                let _ = ch.wait();
            }
            std::thread::sleep(Duration::from_millis(200));
        });
        let t = Instant::now();
        while !ready.load(std::sync::atomic::Ordering::SeqCst)
            && t.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        Sub {
            lines,
            child,
            stop,
            v5,
        }
    }

    /// Every `(topic, correlation data, payload)` so far (the correlation data is empty
    /// unless started with [`Sub::start_v5`] and the message had some).
    pub fn messages_v5(&self) -> Vec<(String, String, String)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| {
                if self.v5 {
                    let mut it = l.splitn(3, '\t');
                    let mut next = || it.next().unwrap_or_default().to_string();
                    (next(), next(), next())
                } else {
                    match l.split_once(' ') {
                        Some((t, p)) => (t.to_string(), String::new(), p.to_string()),
                        None => (l.clone(), String::new(), String::new()),
                    }
                }
            })
            .collect()
    }

    /// Every `(topic, payload)` so far.
    pub fn messages(&self) -> Vec<(String, String)> {
        self.messages_v5()
            .into_iter()
            .map(|(t, _, p)| (t, p))
            .collect()
    }

    /// JSON payloads of messages on `topic`.
    pub fn json_on(&self, topic: &str) -> Vec<serde_json::Value> {
        self.messages()
            .into_iter()
            .filter(|(t, _)| t == topic)
            .filter_map(|(_, p)| serde_json::from_str(&p).ok())
            .collect()
    }

    /// The telemetry messages on `topic` that report events dropped from the outbox.
    pub fn outbox_drops(&self, topic: &str) -> Vec<serde_json::Value> {
        self.json_on(topic)
            .into_iter()
            .filter(|v| v["outbox"]["dropped"] != 0)
            .collect()
    }

    /// Waits until `f` holds for the messages so far.
    pub fn wait(&self, timeout: Duration, mut f: impl FnMut(&[(String, String)]) -> bool) -> bool {
        let t = Instant::now();
        loop {
            if f(&self.messages()) {
                return true;
            }
            if t.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `mosquitto_rr` (MQTT 5 request/response): publishes `payload` on `topic` with a
/// response topic and returns the reply, or `None` after `wait_s` seconds.
pub fn request(args: &[String], topic: &str, payload: &str, wait_s: u32) -> Option<String> {
    let resp = format!("e2e/replies/{}", free_port());
    let out = Command::new("mosquitto_rr")
        .args(args)
        .args([
            "-t",
            topic,
            "-e",
            &resp,
            "-m",
            payload,
            "-W",
            &wait_s.to_string(),
        ])
        .output()
        .expect("run mosquitto_rr");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `mosquitto_pub` of one message (`extra` adds options such as `-V mqttv311`).
pub fn publish(args: &[String], topic: &str, payload: &str, extra: &[&str]) {
    let out = Command::new("mosquitto_pub")
        .args(args)
        .args(extra)
        .args(["-q", "1", "-t", topic, "-m", payload])
        .output()
        .expect("run mosquitto_pub");
    assert!(
        out.status.success(),
        "mosquitto_pub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
