#!/usr/bin/python3
"""Power-loss filesystem peer: a FUSE filesystem that loses, on command, everything a power
cut could lose, and fails or stalls storage calls on command.

    /usr/bin/python3 tests/peers/powerloss_fs.py --backing DIR --mount DIR --control SOCK [--debug]

Modelled on LazyFS (VLDB 2024, used by Jepsen), which keeps unsynced file data in its own
page cache and drops it on command. This one is more forgetful: it also keeps directory
entry changes pending until the directory itself is fsynced. It exists to catch a missing
``fsync`` or a missing directory ``fsync`` in the program under test, so wherever a real
disk *could* lose something after a power cut, this loses it.

Prints ``READY`` on stdout once mounted and listening on the control socket, and nothing
else. Logs go to stderr. SIGTERM/SIGINT end stalls, unmount and exit 0. Needs Debian's
``python3-pyfuse3`` (with trio) under ``/usr/bin/python3``, ``/dev/fuse``, and root (or
fuse3's ``fusermount3``). The backing directory must be empty or absent: the filesystem
always starts empty. This file is the FUSE side (handles, faults, attributes, the control
socket); the namespaces, data layers and the cut are in ``powerloss_model.py`` beside it.

Where things live
-----------------
- The namespace (directories, names, modes, owners, times) lives in this process, twice:
  the *visible* namespace that every call sees and changes, and the *durable* namespace,
  which is what a power cut leaves.
- File data lives in two layers. The *durable* bytes are in one backing file per inode,
  ``BACKING/objects/<inode>``. The *pending* bytes are this process's page cache: 4 KiB
  dirty pages over the durable bytes, plus a pending size (truncates, extensions). Reads
  see both. Memory grows with what is pending, not with what was written.

What makes something durable
----------------------------
- ``fsync`` or ``fdatasync`` of a file (the same thing here) writes its dirty pages and its
  size to its backing file. Nothing else does: not ``close``, not time, not other files'
  fsyncs, not a sync of the directory.
- ``fsync`` of a directory (FUSE ``FSYNCDIR``: what Rust's ``File::open(dir)?.sync_all()``
  sends) makes that one directory's entry list durable: its durable entries become its
  visible ones. Only that directory: a directory made in a parent that is never fsynced is
  lost with everything in it, however well its own contents were synced.
- A rename is two entry changes, one per directory, each durable when its own directory is
  fsynced. Fsync only the target directory and, after a cut, the file has both names (like
  a hard link, as on a filesystem without a journal); fsync only the source and it has
  neither. A directory has one durable name at most: making its new entry durable removes
  its old one (a directory moves as a unit, as on a journaling filesystem).
- Inode attributes (mode, owner, times) are not modelled: a survivor keeps the last ones set.

What a cut drops
----------------
``cut`` drops every pending byte, every pending size change and every pending entry change,
then serves exactly what is reachable from the root through durable entries:
- a file keeps the content and size of its last fsync (empty if it never had one); data
  written after that fsync is gone;
- a new file (or directory, or symlink) whose directory was not fsynced after it appeared
  is gone, even if its data was fsynced (POSIX promises the entry only after an fsync of
  the directory; ext4 often commits it with the file's fsync, this never does);
- a rename whose target directory was not fsynced is undone: the old name is back, and a
  file it replaced is back with its old content;
- an unlink or rmdir whose directory was not fsynced is undone, with the durable content.

``cut tear [KEEP]`` first lets part of the most recent pending write reach the disk: its
first KEEP bytes (default: half of it), rounded down to a 4 KiB boundary of the file. If
that write extended the file, the durable size grows to cover the kept part (the gap, if
any, reads as zeros). Then it cuts as above. This is a write the disk was in the middle of
when the power went: whole 4 KiB pages of it landed, the rest did not.

After a cut the mount stays up and shows the survivors, so the program can be restarted on
top of it; inode numbers of survivors are kept and kernel caches are invalidated before the
reply. File and directory handles opened before the cut are dead: every call on them fails
with EIO, except close. Faults stay as they were; stalled fsyncs in flight are woken (and
fail with EIO, their handle being dead).

Faults
------
Each fault applies to every path, or only under a path PREFIX relative to the mount root
(``/cam1`` matches ``/cam1`` and ``/cam1/x``, not ``/cam10``); a file is matched by its
(first) name, and an unlinked file only by faults without a prefix.
- ``fail write ERRNO``: ``write``, and size changes (``truncate``, ``ftruncate``,
  ``open(O_TRUNC)``), fail with that errno (``EIO``, ``ENOSPC``, or any errno name), storing
  nothing.
- ``fail fsync ERRNO``: ``fsync``/``fdatasync`` and directory fsyncs fail with that errno.
  What was pending stays pending, so a later fsync after ``clear`` stores it. (Linux may
  instead drop it and report success later: a program must not count on either.)
- ``readonly``: every modification fails with ``EROFS``: open for writing, create, mkdir,
  mknod, symlink, unlink, rmdir, rename, setattr, write; and an fsync of a file or a
  directory with something pending.
- ``stall fsync SECONDS``: every fsync (files and directories) started while it is set
  waits SECONDS first, or until ``clear`` or a cut; then it goes on as usual.
- ``clear`` removes every fault and wakes stalled fsyncs.

Control protocol
----------------
A Unix stream socket (``--control``). A client sends commands, one per line (UTF-8, words
separated by spaces); each gets one reply line: ``ok JSON`` or ``err MESSAGE``.

    ping                               ok {}
    status                             ok {"pending_files", "pending_bytes", "pending_dirs",
                                           "inodes", "cuts", "faults": ["fail write EIO /a", ...]}
    durable                            ok {"files": {PATH: SIZE}, "dirs": [PATH],
                                           "symlinks": {PATH: TARGET}, "special": [PATH]}:
                                           what a cut would leave (special: sockets, FIFOs)
    cut                                ok {"dropped_inodes", "dropped_bytes", "survivors",
    cut tear [KEEP]                        "torn": null | {"path", "offset", "length", "kept"}}
    fail write|fsync ERRNO [PREFIX]    ok {}
    readonly [PREFIX]                  ok {}
    stall fsync SECONDS [PREFIX]       ok {}
    clear                              ok {}

``pending_bytes`` counts dirty pages (4 KiB each); ``pending_dirs`` counts directories whose
visible entries differ from their durable ones. A reply is sent once the command has taken
full effect (after a cut: once the kernel has dropped its caches).

Sockets and FIFOs are entries like files, without data (a program's control socket can
live here). Not supported: hard links (``link`` fails with EPERM), device nodes (EPERM),
extended attributes, ``fallocate`` (EOPNOTSUPP), ``RENAME_EXCHANGE`` (EINVAL). ``sync``
and ``syncfs`` make nothing durable. File locks are the kernel's own (local to this mount).
Writes go through to this process at once (no kernel writeback cache), so a ``kill -9`` of
the program loses nothing that a cut would keep.
"""

import argparse
import errno
import functools
import json
import logging
import os
import signal
import socket
import stat
import sys
import time

import pyfuse3
import trio

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from powerloss_model import (  # noqa: E402  (beside this file)
    NAME_MAX,
    PAGE,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    ROOT_INODE,
    FsError,
    Model,
)

assert (pyfuse3.ROOT_INODE, pyfuse3.RENAME_EXCHANGE, pyfuse3.RENAME_NOREPLACE) == (
    ROOT_INODE,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
)
log = logging.getLogger("powerloss_fs")


def fail(code):
    return pyfuse3.FUSEError(code)


class Fault:
    __slots__ = ("kind", "err", "prefix", "seconds", "released")

    def __init__(self, kind, err=0, prefix=None, seconds=0.0):
        self.kind = kind  # "write" | "fsync" | "readonly" | "stall"
        self.err = err
        self.prefix = prefix  # None: every path
        self.seconds = seconds
        self.released = trio.Event() if kind == "stall" else None

    def matches(self, path):
        if self.prefix is None:
            return True
        if path is None:
            return False
        return path == self.prefix or path.startswith(self.prefix + "/")

    def describe(self):
        where = "" if self.prefix is None else " " + self.prefix
        if self.kind == "readonly":
            return "readonly" + where
        if self.kind == "stall":
            return "stall fsync %g%s" % (self.seconds, where)
        return "fail %s %s%s" % (self.kind, errno.errorcode.get(self.err, self.err), where)


def guarded(fn):
    """A handler that never lets an exception escape into pyfuse3 (which would end the main
    loop): the model's errors and OS errors keep their errno, anything else is logged and
    becomes EIO."""

    @functools.wraps(fn)
    async def wrapper(self, *args):
        try:
            return await fn(self, *args)
        except pyfuse3.FUSEError:
            raise
        except FsError as e:
            raise fail(e.errno)
        except OSError as e:
            log.warning("%s: %s", fn.__name__, e)
            raise fail(e.errno or errno.EIO)
        except Exception:
            log.exception("%s failed", fn.__name__)
            raise fail(errno.EIO)

    return wrapper


class Handle:
    __slots__ = ("node", "append", "listing")

    def __init__(self, node, append=False):
        self.node = node
        self.append = append
        self.listing = None


class Ops(pyfuse3.Operations):
    """The FUSE side: handles, faults and attributes around the Model."""

    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(self, model, backing):
        super().__init__()
        self.m = model
        self.backing_dir = backing
        self.handles = {}
        self.next_fh = 1
        self.faults = []

    # ----- faults -----

    def fault(self, kind, *paths):
        for f in self.faults:
            if f.kind == kind and any(f.matches(p) for p in paths):
                return f
        return None

    def refuse_readonly(self, *paths):
        if self.faults and self.fault("readonly", *paths):
            raise fail(errno.EROFS)

    def refuse_write(self, path):
        f = self.faults and self.fault("write", path)
        if f:
            raise fail(f.err)

    async def stall(self, path):
        f = self.faults and self.fault("stall", path)
        if f:
            with trio.move_on_after(f.seconds):
                await f.released.wait()

    def release_stalls(self):
        for f in self.faults:
            if f.released is not None:
                f.released.set()
                f.released = trio.Event()

    def clear(self):
        for f in self.faults:
            if f.released is not None:
                f.released.set()
        self.faults = []

    # ----- helpers -----

    def entry(self, node):
        e = pyfuse3.EntryAttributes()
        e.st_ino = node.ino
        e.generation = 0
        e.entry_timeout = 0
        e.attr_timeout = 0
        e.st_mode = node.mode
        if node.is_dir:
            e.st_nlink = 2 + node.nsub
            size = PAGE
        else:
            e.st_nlink = len(node.links)
            size = node.size if node.is_file else len(node.target)
        e.st_uid = node.uid
        e.st_gid = node.gid
        e.st_rdev = 0
        e.st_size = size
        e.st_blksize = PAGE
        e.st_blocks = (size + 511) // 512
        e.st_atime_ns = node.atime
        e.st_mtime_ns = node.mtime
        e.st_ctime_ns = node.ctime
        return e

    def live(self, fh):
        h = self.handles.get(fh)
        if h is None:
            raise fail(errno.EIO)  # opened before a cut
        return h

    def open_handle(self, node, flags):
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = Handle(node, bool(flags & os.O_APPEND))
        node.opens += 1
        return fh

    def drop_handle(self, fh):
        h = self.handles.pop(fh, None)
        if h is None:
            return
        h.node.opens -= 1
        if h.node.opens <= 0:
            self.m.close_fd(h.node)
            self.m.maybe_free(h.node)

    def new_node(self, parent_inode, name, mode, ctx):
        parent = self.m.dir(parent_inode)
        if self.faults:
            self.refuse_readonly(self.m.child_path(parent, name))
        node = self.m.make(parent, name, mode, ctx.uid, ctx.gid)
        node.nlookup += 1
        return node

    # ----- namespace -----

    @guarded
    async def lookup(self, parent_inode, name, ctx):
        node = self.m.child(self.m.dir(parent_inode), name)
        node.nlookup += 1
        return self.entry(node)

    @guarded
    async def forget(self, inode_list):
        for ino, n in inode_list:
            self.m.forget(ino, n)

    @guarded
    async def getattr(self, inode, ctx):
        return self.entry(self.m.node(inode))

    @guarded
    async def setattr(self, inode, attr, fields, fh, ctx):
        node = self.m.node(inode)
        if fh is not None and fh not in self.handles:
            raise fail(errno.EIO)
        path = self.m.path(node) if self.faults else None
        self.refuse_readonly(path)
        if fields.update_size:
            if node.is_dir:
                raise fail(errno.EISDIR)
            if not node.is_file:
                raise fail(errno.EINVAL)
            self.refuse_write(path)
            self.m.truncate(node, attr.st_size)
        if fields.update_mode:
            node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(attr.st_mode)
        if fields.update_uid:
            node.uid = attr.st_uid
        if fields.update_gid:
            node.gid = attr.st_gid
        if fields.update_atime:
            node.atime = attr.st_atime_ns
        if fields.update_mtime:
            node.mtime = attr.st_mtime_ns
        node.ctime = attr.st_ctime_ns if fields.update_ctime else time.time_ns()
        return self.entry(node)

    @guarded
    async def readlink(self, inode, ctx):
        node = self.m.node(inode)
        if not stat.S_ISLNK(node.mode):
            raise fail(errno.EINVAL)
        return node.target

    @guarded
    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        # Regular files, and sockets and FIFOs (entries without data: a program's control
        # socket can live here); no device nodes.
        kind = stat.S_IFMT(mode)
        if kind not in (stat.S_IFREG, stat.S_IFSOCK, stat.S_IFIFO):
            raise fail(errno.EPERM)
        return self.entry(self.new_node(parent_inode, name, kind | stat.S_IMODE(mode), ctx))

    @guarded
    async def mkdir(self, parent_inode, name, mode, ctx):
        return self.entry(self.new_node(parent_inode, name, stat.S_IFDIR | stat.S_IMODE(mode), ctx))

    @guarded
    async def symlink(self, parent_inode, name, target, ctx):
        node = self.new_node(parent_inode, name, stat.S_IFLNK | 0o777, ctx)
        node.target = bytes(target)
        return self.entry(node)

    @guarded
    async def link(self, inode, new_parent_inode, new_name, ctx):
        raise fail(errno.EPERM)

    @guarded
    async def unlink(self, parent_inode, name, ctx):
        parent = self.m.dir(parent_inode)
        self.refuse_readonly(self.m.child_path(parent, name) if self.faults else None)
        self.m.remove(parent, name, want_dir=False)

    @guarded
    async def rmdir(self, parent_inode, name, ctx):
        parent = self.m.dir(parent_inode)
        self.refuse_readonly(self.m.child_path(parent, name) if self.faults else None)
        self.m.remove(parent, name, want_dir=True)

    @guarded
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        pold = self.m.dir(parent_inode_old)
        pnew = self.m.dir(parent_inode_new)
        if self.faults:
            self.refuse_readonly(self.m.child_path(pold, name_old), self.m.child_path(pnew, name_new))
        self.m.rename(pold, name_old, pnew, name_new, flags)

    # ----- files -----

    def open_file(self, node, flags):
        if node.is_dir:
            raise fail(errno.EISDIR)
        if not node.is_file:
            raise fail(errno.EINVAL)
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY or flags & os.O_TRUNC
        if writing and self.faults:
            self.refuse_readonly(self.m.path(node))
        if flags & os.O_TRUNC:
            if self.faults:
                self.refuse_write(self.m.path(node))
            self.m.truncate(node, 0)
        return pyfuse3.FileInfo(fh=self.open_handle(node, flags))

    @guarded
    async def open(self, inode, flags, ctx):
        return self.open_file(self.m.node(inode), flags)

    @guarded
    async def create(self, parent_inode, name, mode, flags, ctx):
        parent = self.m.dir(parent_inode)
        existing = parent.entries.get(name)
        if existing is not None:
            if flags & os.O_EXCL:
                raise fail(errno.EEXIST)
            fi = self.open_file(existing, flags)
            existing.nlookup += 1
            return fi, self.entry(existing)
        node = self.new_node(parent_inode, name, stat.S_IFREG | stat.S_IMODE(mode), ctx)
        return pyfuse3.FileInfo(fh=self.open_handle(node, flags)), self.entry(node)

    @guarded
    async def read(self, fh, off, size):
        return self.m.read(self.live(fh).node, off, size)

    @guarded
    async def write(self, fh, off, buf):
        h = self.live(fh)
        node = h.node
        if self.faults:
            path = self.m.path(node)
            self.refuse_readonly(path)
            self.refuse_write(path)
        if h.append:
            off = node.size
        self.m.write(node, off, buf)
        return len(buf)

    @guarded
    async def flush(self, fh):
        pass  # close() makes nothing durable

    @guarded
    async def release(self, fh):
        self.drop_handle(fh)

    @guarded
    async def fsync(self, fh, datasync):
        await self.stall(self.m.path(self.live(fh).node) if self.faults else None)
        node = self.live(fh).node  # a cut during the stall kills the handle
        if self.faults:
            path = self.m.path(node)
            if node in self.m.dirty_files:
                self.refuse_readonly(path)
            f = self.fault("fsync", path)
            if f:
                raise fail(f.err)
        self.m.flush(node)

    # ----- directories -----

    @guarded
    async def opendir(self, inode, ctx):
        node = self.m.dir(inode)
        return self.open_handle(node, 0)

    @guarded
    async def readdir(self, fh, start_id, token):
        h = self.live(fh)
        if start_id == 0 or h.listing is None:
            h.listing = sorted(h.node.entries.items(), key=lambda e: e[0])
        for i in range(start_id, len(h.listing)):
            name, child = h.listing[i]
            if child.freed:
                continue
            if not pyfuse3.readdir_reply(token, name, self.entry(child), i + 1):
                break
            child.nlookup += 1

    @guarded
    async def releasedir(self, fh):
        self.drop_handle(fh)

    @guarded
    async def fsyncdir(self, fh, datasync):
        await self.stall(self.m.path(self.live(fh).node) if self.faults else None)
        d = self.live(fh).node
        if self.faults:
            path = self.m.path(d)
            if self.m.dir_pending(d):
                self.refuse_readonly(path)
            f = self.fault("fsync", path)
            if f:
                raise fail(f.err)
        self.m.sync_dir(d)

    # ----- the rest -----

    @guarded
    async def statfs(self, ctx):
        st = os.statvfs(self.backing_dir)
        out = pyfuse3.StatvfsData()
        for field in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                      "f_files", "f_ffree", "f_favail"):
            setattr(out, field, getattr(st, field))
        out.f_namemax = NAME_MAX
        return out

    @guarded
    async def access(self, inode, mode, ctx):
        self.m.node(inode)
        return True

    @guarded
    async def getxattr(self, inode, name, ctx):
        raise fail(pyfuse3.ENOATTR)

    @guarded
    async def listxattr(self, inode, ctx):
        return []

    @guarded
    async def setxattr(self, inode, name, value, ctx):
        raise fail(errno.ENOTSUP)

    @guarded
    async def removexattr(self, inode, name, ctx):
        raise fail(pyfuse3.ENOATTR)

    # ----- control -----

    def cut(self, tear, keep):
        report, inodes, entries = self.m.cut(tear, keep)
        self.handles = {}
        self.release_stalls()
        return report, inodes, entries

    def status(self):
        out = self.m.status()
        out["faults"] = [f.describe() for f in self.faults]
        return out


class CommandError(Exception):
    pass


def parse_prefix(words):
    if not words:
        return None
    if len(words) > 1:
        raise CommandError("one path prefix at most")
    p = words[0]
    if not p.startswith("/"):
        raise CommandError("a path prefix starts with / (relative to the mount root): %r" % p)
    p = p.rstrip("/")
    return p or None


def parse_errno(name):
    code = getattr(errno, name.upper(), None)
    if not isinstance(code, int):
        raise CommandError("unknown errno name %r" % name)
    return code


def invalidate(inodes, entries):
    """Makes the kernel forget what it cached of the pre-cut state (in a thread: the kernel
    may need this process to answer requests meanwhile)."""
    for parent, name in entries:
        try:
            pyfuse3.invalidate_entry(parent, name)
        except OSError:
            pass  # the kernel did not know it
    for ino in inodes:
        try:
            pyfuse3.invalidate_inode(ino)
        except OSError:
            pass


class Control:
    def __init__(self, ops):
        self.ops = ops

    async def serve(self, path, task_status=trio.TASK_STATUS_IGNORED):
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(path)
        sock.listen(16)
        task_status.started()
        await trio.serve_listeners(self.connection, [trio.SocketListener(sock)])

    async def connection(self, stream):
        buf = b""
        try:
            async with stream:
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buf += data
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        reply = await self.run(line.decode("utf-8", "replace"))
                        await stream.send_all(reply.encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:
            log.exception("control connection")

    async def run(self, line):
        words = line.split()
        try:
            result = await self.command(words)
        except CommandError as e:
            return "err %s" % e
        except Exception as e:
            log.exception("control command %r", line)
            return "err internal error: %s" % e
        log.info("control: %s -> %s", line.strip(), json.dumps(result))
        return "ok " + json.dumps(result)

    async def command(self, words):
        if not words:
            raise CommandError("empty command")
        cmd, args = words[0].lower(), words[1:]
        ops = self.ops
        if cmd == "ping" and not args:
            return {}
        if cmd == "status" and not args:
            return ops.status()
        if cmd == "durable" and not args:
            return ops.m.durable()
        if cmd == "cut":
            tear, keep = False, None
            if args:
                if args[0] != "tear" or len(args) > 2:
                    raise CommandError("usage: cut [tear [KEEP]]")
                tear = True
                if len(args) == 2:
                    try:
                        keep = int(args[1])
                    except ValueError:
                        raise CommandError("KEEP is a byte count: %r" % args[1])
            report, inodes, entries = ops.cut(tear, keep)
            await trio.to_thread.run_sync(invalidate, inodes, entries)
            return report
        if cmd == "fail":
            if len(args) < 2 or args[0] not in ("write", "fsync"):
                raise CommandError("usage: fail write|fsync ERRNO [PREFIX]")
            ops.faults.append(Fault(args[0], parse_errno(args[1]), parse_prefix(args[2:])))
            return {}
        if cmd == "readonly":
            ops.faults.append(Fault("readonly", errno.EROFS, parse_prefix(args)))
            return {}
        if cmd == "stall":
            if len(args) < 2 or args[0] != "fsync":
                raise CommandError("usage: stall fsync SECONDS [PREFIX]")
            try:
                seconds = float(args[1])
            except ValueError:
                raise CommandError("SECONDS is a number: %r" % args[1])
            ops.faults.append(Fault("stall", 0, parse_prefix(args[2:]), seconds))
            return {}
        if cmd == "clear" and not args:
            ops.clear()
            return {}
        raise CommandError("unknown command %r (see tests/peers/powerloss_fs.py)" % " ".join(words))


async def serve(ops, control_path):
    async with trio.open_nursery() as nursery:
        await nursery.start(Control(ops).serve, control_path)
        await nursery.start(watch_signals, ops)
        print("READY", flush=True)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


async def watch_signals(ops, task_status=trio.TASK_STATUS_IGNORED):
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for sig in signals:
            log.info("signal %d: unmounting", sig)
            ops.clear()  # a stalled fsync would hold the main loop
            pyfuse3.terminate()
            return


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backing", required=True, help="durable file data (empty or absent)")
    parser.add_argument("--mount", required=True, help="mount point (an existing directory)")
    parser.add_argument("--control", required=True, help="control socket path (outside the mount)")
    parser.add_argument("--debug", action="store_true", help="log every FUSE request")
    args = parser.parse_args()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.debug else logging.INFO,
        format="powerloss_fs: %(levelname)s %(message)s",
    )
    os.makedirs(args.backing, exist_ok=True)
    if os.listdir(args.backing):
        sys.exit("powerloss_fs: backing directory %s is not empty" % args.backing)
    objects = os.path.join(args.backing, "objects")
    os.mkdir(objects)
    if os.path.exists(args.control):
        os.unlink(args.control)
    ops = Ops(Model(objects), args.backing)
    options = set(pyfuse3.default_options)
    options |= {"fsname=powerloss_fs", "subtype=powerloss"}
    if args.debug:
        options.add("debug")
    pyfuse3.init(ops, args.mount, options)
    try:
        trio.run(serve, ops, args.control)
    except BaseException:
        pyfuse3.close(unmount=True)
        raise
    pyfuse3.close(unmount=True)
    try:
        os.unlink(args.control)
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    main()
