"""The core of the power-loss filesystem peer (tests/peers/powerloss_fs.py, whose docstring
describes the semantics): the visible and durable namespaces, the durable and pending data
layers, fsync, fsyncdir, and the power cut. No FUSE here: the peer's handlers call it, and
it raises FsError for the POSIX errors they reply.
"""

import errno
import os
import stat
import time

PAGE = 4096
NAME_MAX = 255
ROOT_INODE = 1  # FUSE's
RENAME_NOREPLACE = 1  # <linux/fs.h>
RENAME_EXCHANGE = 2


class FsError(Exception):
    """A POSIX error for the caller (the FUSE side turns it into a reply)."""

    def __init__(self, code):
        super().__init__(os.strerror(code))
        self.errno = code


def fail(code):
    return FsError(code)


class Node:
    """One inode: a directory (entries), a regular file (data) or a symlink (target)."""

    __slots__ = (
        "ino", "mode", "uid", "gid", "atime", "mtime", "ctime",
        "links", "dlinks", "nlookup", "opens", "freed",
        "entries", "dentries", "dparent", "nsub",
        "size", "dsize", "floor", "dirty", "fd", "last_write",
        "target",
    )

    def __init__(self, ino, mode, uid, gid):
        self.ino = ino
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.atime = self.mtime = self.ctime = time.time_ns()
        self.links = set()  # visible names: {(parent Node, name)}; one at most for a directory
        self.dlinks = 0  # durable entries naming this node, in any directory
        self.nlookup = 0  # the kernel's references (lookup count)
        self.opens = 0  # live file and directory handles
        self.freed = False  # no name, visible or durable, and no handle: data deleted
        # Directories.
        self.entries = {}  # visible: name (bytes) -> Node
        self.dentries = {}  # durable: name -> Node
        self.dparent = None  # durable (parent, name) of a directory
        self.nsub = 0  # visible subdirectories, for st_nlink
        # Files.
        self.size = 0  # visible size
        self.dsize = 0  # durable size == size of the backing file
        self.floor = 0  # backing bytes at or past this offset read as zeros (pending truncate)
        self.dirty = {}  # page index -> bytearray(PAGE); bytes past `size` are zero
        self.fd = None  # backing file, open while the node has handles
        self.last_write = None  # (sequence, offset, length) of its last pending write
        # Symlinks.
        self.target = b""

    @property
    def is_dir(self):
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self):
        return stat.S_ISREG(self.mode)


class Model:
    """The two namespaces and the two data layers. Raises FsError for POSIX errors; knows
    nothing of FUSE, faults or handles."""

    def __init__(self, objects):
        self.objects = objects
        self.root = Node(ROOT_INODE, stat.S_IFDIR | 0o755, os.getuid(), os.getgid())
        self.root.nlookup = 1
        self.inodes = {self.root.ino: self.root}
        self.next_ino = ROOT_INODE + 1
        self.dirty_files = set()  # files with pending data or size
        self.dirty_dirs = set()  # directories whose entries changed since their last fsync
        self.write_seq = 0
        self.cuts = 0

    # ----- lookup and names -----

    def node(self, ino):
        node = self.inodes.get(ino)
        if node is None:
            raise fail(errno.ENOENT)
        return node

    def dir(self, ino):
        node = self.node(ino)
        if not node.is_dir:
            raise fail(errno.ENOTDIR)
        return node

    def child(self, parent, name):
        node = parent.entries.get(name)
        if node is None:
            raise fail(errno.ENOENT)
        return node

    def path(self, node):
        """The visible path of `node` ('/a/b'), by its first name; None if it has none."""
        parts = []
        while node is not self.root:
            if not node.links:
                return None
            parent, name = min(node.links, key=lambda link: link[1])
            parts.append(name)
            node = parent
        return "/" + "/".join(p.decode("utf-8", "surrogateescape") for p in reversed(parts))

    def child_path(self, parent, name):
        base = self.path(parent)
        if base is None:
            return None
        return base.rstrip("/") + "/" + name.decode("utf-8", "surrogateescape")

    @staticmethod
    def check_name(name):
        if len(name) > NAME_MAX:
            raise fail(errno.ENAMETOOLONG)
        if name in (b"", b".", b"..") or b"/" in name:
            raise fail(errno.EINVAL)

    def dir_is_live(self, d):
        return d is self.root or bool(d.links)

    # ----- the visible namespace -----

    def link(self, parent, name, node):
        parent.entries[name] = node
        node.links.add((parent, name))
        if node.is_dir:
            parent.nsub += 1
        parent.mtime = parent.ctime = time.time_ns()
        self.dirty_dirs.add(parent)

    def unlink_entry(self, parent, name):
        node = parent.entries.pop(name)
        node.links.discard((parent, name))
        if node.is_dir:
            parent.nsub -= 1
        parent.mtime = parent.ctime = node.ctime = time.time_ns()
        self.dirty_dirs.add(parent)
        self.maybe_free(node)
        return node

    def make(self, parent, name, mode, uid, gid):
        self.check_name(name)
        if not self.dir_is_live(parent):
            raise fail(errno.ENOENT)
        if name in parent.entries:
            raise fail(errno.EEXIST)
        node = Node(self.next_ino, mode, uid, gid)
        self.next_ino += 1
        self.inodes[node.ino] = node
        self.link(parent, name, node)
        return node

    def remove(self, parent, name, want_dir):
        node = self.child(parent, name)
        if want_dir:
            if not node.is_dir:
                raise fail(errno.ENOTDIR)
            if node.entries:
                raise fail(errno.ENOTEMPTY)
        elif node.is_dir:
            raise fail(errno.EISDIR)
        self.unlink_entry(parent, name)

    def rename(self, pold, nold, pnew, nnew, flags):
        if flags & RENAME_EXCHANGE:
            raise fail(errno.EINVAL)
        node = self.child(pold, nold)
        self.check_name(nnew)
        if not self.dir_is_live(pnew):
            raise fail(errno.ENOENT)
        target = pnew.entries.get(nnew)
        if target is node:
            return
        if target is not None and flags & RENAME_NOREPLACE:
            raise fail(errno.EEXIST)
        if node.is_dir:
            p = pnew
            while p is not self.root:
                if p is node:
                    raise fail(errno.EINVAL)
                p = next(iter(p.links))[0]
            if target is not None:
                if not target.is_dir:
                    raise fail(errno.ENOTDIR)
                if target.entries:
                    raise fail(errno.ENOTEMPTY)
        elif target is not None and target.is_dir:
            raise fail(errno.EISDIR)
        if target is not None:
            self.unlink_entry(pnew, nnew)
        # Link first, so the node always has a name and is never freed on the way.
        self.link(pnew, nnew, node)
        self.unlink_entry(pold, nold)

    def maybe_free(self, node):
        """Deletes a node's data once nothing can reach it: no visible or durable name, no
        handle. The kernel may still hold it (nlookup); it leaves the table on forget."""
        if node.freed or node is self.root or node.links or node.dlinks or node.opens:
            return
        node.freed = True
        self.dirty_files.discard(node)
        self.dirty_dirs.discard(node)
        node.dirty = {}
        self.close_fd(node)
        self.delete_object(node)
        if node.is_dir:
            dentries, node.dentries = node.dentries, {}
            for name, child in dentries.items():
                child.dlinks -= 1
                if child.dparent == (node, name):
                    child.dparent = None
                self.maybe_free(child)
        if node.nlookup <= 0:
            self.inodes.pop(node.ino, None)

    def forget(self, ino, n):
        node = self.inodes.get(ino)
        if node is None:
            return
        node.nlookup -= n
        if node.freed and node.nlookup <= 0:
            del self.inodes[ino]

    # ----- file data -----

    def object_path(self, node):
        return os.path.join(self.objects, str(node.ino))

    def object_fd(self, node):
        if node.fd is None:
            node.fd = os.open(self.object_path(node), os.O_RDWR | os.O_CREAT, 0o600)
        return node.fd

    def close_fd(self, node):
        if node.fd is not None:
            os.close(node.fd)
            node.fd = None

    def delete_object(self, node):
        if node.is_file:
            try:
                os.unlink(self.object_path(node))
            except FileNotFoundError:
                pass

    def backing(self, node, off, n):
        """`n` visible bytes at `off` from the durable layer (zeros past the durable end or a
        pending truncate)."""
        limit = min(node.floor, node.dsize)
        if off >= limit:
            return bytes(n)
        data = os.pread(self.object_fd(node), min(n, limit - off), off)
        if len(data) < n:
            data += bytes(n - len(data))
        return data

    def read(self, node, off, size):
        end = min(off + size, node.size)
        if off >= end:
            return b""
        out = bytearray()
        pos = off
        while pos < end:
            pg = pos // PAGE
            base = pg * PAGE
            page = node.dirty.get(pg)
            if page is not None:
                stop = min(end, base + PAGE)
                out += page[pos - base:stop - base]
                pos = stop
                continue
            stop = base + PAGE
            while stop < end and stop // PAGE not in node.dirty:
                stop += PAGE
            stop = min(stop, end)
            out += self.backing(node, pos, stop - pos)
            pos = stop
        return bytes(out)

    def write(self, node, off, buf):
        end = off + len(buf)
        # A hole past the visible end must read as zeros, whatever the backing file holds.
        node.floor = min(node.floor, node.size)
        view = memoryview(buf)
        pos = off
        while pos < end:
            pg = pos // PAGE
            base = pg * PAGE
            stop = min(end, base + PAGE)
            page = node.dirty.get(pg)
            if page is None:
                if pos == base and stop == base + PAGE:
                    node.dirty[pg] = bytearray(view[pos - off:stop - off])
                    pos = stop
                    continue
                page = bytearray(self.page_base(node, base))
                node.dirty[pg] = page
            page[pos - base:stop - base] = view[pos - off:stop - off]
            pos = stop
        node.size = max(node.size, end)
        node.mtime = node.ctime = time.time_ns()
        self.write_seq += 1
        node.last_write = (self.write_seq, off, len(buf))
        self.mark(node)

    def page_base(self, node, base):
        """The visible content of a clean page: durable bytes, zeros past the visible end."""
        data = self.backing(node, base, PAGE)
        if base + PAGE > node.size:
            keep = max(0, node.size - base)
            data = data[:keep] + bytes(PAGE - keep)
        return data

    def truncate(self, node, new):
        old = node.size
        node.floor = min(node.floor, old, new)
        if new < old:
            first_gone = (new + PAGE - 1) // PAGE
            for pg in [p for p in node.dirty if p >= first_gone]:
                del node.dirty[pg]
            if new % PAGE:
                page = node.dirty.get(new // PAGE)
                if page is not None:
                    page[new % PAGE:] = bytes(PAGE - new % PAGE)
        node.size = new
        node.last_write = None
        node.mtime = node.ctime = time.time_ns()
        self.mark(node)

    def mark(self, node):
        if node.dirty or node.size != node.dsize or node.floor < node.dsize:
            self.dirty_files.add(node)
        else:
            self.dirty_files.discard(node)

    def flush(self, node):
        """fsync: the pending layer of `node` becomes durable."""
        if node not in self.dirty_files:
            return
        fd = self.object_fd(node)
        limit = min(node.floor, node.dsize)
        if limit < node.dsize:
            os.ftruncate(fd, limit)
        pages = sorted(node.dirty)
        i = 0
        while i < len(pages):
            j = i
            while j + 1 < len(pages) and pages[j + 1] == pages[j] + 1:
                j += 1
            start = pages[i] * PAGE
            data = b"".join(node.dirty[p] for p in pages[i:j + 1])
            n = min(len(data), node.size - start)
            if n > 0:
                pwrite_all(fd, memoryview(data)[:n], start)
            i = j + 1
        os.ftruncate(fd, node.size)
        node.dsize = node.floor = node.size
        node.dirty = {}
        node.last_write = None
        self.dirty_files.discard(node)

    # ----- the durable namespace -----

    def dir_pending(self, d):
        return d.entries != d.dentries

    def sync_dir(self, d):
        """fsyncdir: the durable entries of `d` become its visible ones."""
        old, new = d.dentries, dict(d.entries)
        gone = []
        for name, child in old.items():
            if new.get(name) is not child:
                child.dlinks -= 1
                if child.dparent == (d, name):
                    child.dparent = None
                gone.append(child)
        for name, child in new.items():
            if old.get(name) is child:
                continue
            child.dlinks += 1
            if child.is_dir:
                if child.dparent is not None:
                    # A directory has one durable name: its old entry goes with this one.
                    p, n = child.dparent
                    if p.dentries.get(n) is child:
                        del p.dentries[n]
                        child.dlinks -= 1
                child.dparent = (d, name)
        d.dentries = new
        self.dirty_dirs.discard(d)
        for child in gone:
            self.maybe_free(child)

    def durable(self):
        files, dirs, links, special = {}, [], {}, []
        stack = [(self.root, "")]
        seen = {self.root.ino}
        while stack:
            d, prefix = stack.pop()
            for name, child in sorted(d.dentries.items()):
                p = prefix + "/" + name.decode("utf-8", "surrogateescape")
                if child.is_dir:
                    if child.ino not in seen:
                        seen.add(child.ino)
                        dirs.append(p)
                        stack.append((child, p))
                elif child.is_file:
                    files[p] = child.dsize
                elif stat.S_ISLNK(child.mode):
                    links[p] = child.target.decode("utf-8", "surrogateescape")
                else:
                    special.append(p)
        return {"files": files, "dirs": sorted(dirs), "symlinks": links, "special": sorted(special)}

    # ----- power cut -----

    def tear(self, keep):
        """Lets the first `keep` bytes (4 KiB-aligned) of the last pending write reach the
        backing file."""
        candidates = [n for n in self.dirty_files if n.last_write is not None]
        if not candidates:
            return None
        node = max(candidates, key=lambda n: n.last_write[0])
        _, off, length = node.last_write
        keep = length // 2 if keep is None else max(0, min(keep, length))
        end = (off + keep) // PAGE * PAGE
        kept = max(0, end - off)
        if kept:
            pwrite_all(self.object_fd(node), self.read(node, off, kept), off)
            node.dsize = max(node.dsize, end)
        return {"path": self.path(node), "offset": off, "length": length, "kept": kept}

    def cut(self, tear=False, keep=None):
        """Drops everything pending. Returns (report, inodes and entries the kernel must
        forget)."""
        torn = self.tear(keep) if tear else None
        stale_entries = []
        for d in self.dirty_dirs:
            for name in set(d.entries) | set(d.dentries):
                stale_entries.append((d.ino, name))
        stale_inodes = {n.ino for n in self.dirty_files} | {d.ino for d in self.dirty_dirs}
        dropped_bytes = sum(len(n.dirty) for n in self.dirty_files) * PAGE

        survivors = {self.root.ino: self.root}
        dirs = [self.root]
        i = 0
        while i < len(dirs):
            for child in dirs[i].dentries.values():
                if child.ino not in survivors:
                    survivors[child.ino] = child
                    if child.is_dir:
                        dirs.append(child)
            i += 1
        for node in survivors.values():
            node.links = set()
            node.dlinks = 0
            node.nsub = 0
            node.opens = 0
            node.freed = False
            self.close_fd(node)
            if node.is_file:
                node.dirty = {}
                node.size = node.floor = node.dsize
                node.last_write = None
        self.root.dparent = None
        for d in dirs:
            for name, child in list(d.dentries.items()):
                if child.is_dir and child.links:
                    del d.dentries[name]  # a second durable name of a directory: cannot be
                    continue
                child.links.add((d, name))
                child.dlinks += 1
                if child.is_dir:
                    d.nsub += 1
                    child.dparent = (d, name)
            d.entries = dict(d.dentries)
        dropped = [n for n in self.inodes.values() if n.ino not in survivors]
        for node in dropped:
            node.freed = True
            self.close_fd(node)
            self.delete_object(node)
            node.dirty, node.entries, node.dentries, node.links = {}, {}, {}, set()
        stale_inodes |= {n.ino for n in dropped}
        # Objects of nodes freed earlier but still held by the kernel are already gone.
        self.inodes = survivors
        self.dirty_files = set()
        self.dirty_dirs = set()
        self.cuts += 1
        report = {
            "dropped_inodes": len(dropped),
            "dropped_bytes": dropped_bytes,
            "survivors": len(survivors),
            "torn": torn,
        }
        return report, sorted(stale_inodes), stale_entries

    def status(self):
        return {
            "pending_files": len(self.dirty_files),
            "pending_bytes": sum(len(n.dirty) for n in self.dirty_files) * PAGE,
            "pending_dirs": sum(1 for d in self.dirty_dirs if self.dir_pending(d)),
            "inodes": len(self.inodes),
            "cuts": self.cuts,
        }


def pwrite_all(fd, data, off):
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, off)
        view = view[n:]
        off += n
