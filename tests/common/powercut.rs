//! A FUSE file system that forgets, on command, everything a power cut
//! would: it serves reads and writes from memory and keeps, beside what
//! programs see, the image a disk would hold after losing power.
//!
//! What becomes durable, and when (the strict POSIX reading):
//! - a file's content and length, by `fsync` or `fdatasync` of that file
//!   (FUSE's FSYNC request). `sync_file_range` sends no request at all, so
//!   it makes nothing durable here, as on a disk whose cache is not flushed;
//! - a directory's names (files created, renamed or removed in it), by
//!   `fsync` of that directory (FSYNCDIR).
//!
//! [`Disk::cut`] throws away everything else: files return to their last
//! synced content and length, directories to their last synced names. A
//! power cut of a node is: SIGKILL it, wait until it has exited, `cut`,
//! restart it on the same directory. Files are opened in direct-I/O mode and
//! attributes are never cached, so the kernel's page cache cannot hide a cut
//! (or make writes durable behind our back).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, MountOption,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, WriteFlags,
};

const PAGE: u64 = 4096;
const NO_CACHE: Duration = Duration::ZERO;

type Page = Box<[u8; PAGE as usize]>;

/// A file: its durable pages and length, and the pages written since.
#[derive(Default)]
struct File {
    durable: HashMap<u64, Page>,
    durable_len: u64,
    dirty: HashMap<u64, Page>,
    len: u64,
    /// Durable bytes at or past this offset were truncated away (not yet synced).
    cut_from: u64,
}

impl File {
    fn page(&self, p: u64) -> Option<&Page> {
        self.dirty.get(&p).or_else(|| if p * PAGE < self.cut_from { self.durable.get(&p) } else { None })
    }

    fn read(&self, offset: u64, size: u64) -> Vec<u8> {
        let end = (offset + size).min(self.len);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let (p, o) = (at / PAGE, (at % PAGE) as usize);
            let n = ((PAGE as usize - o) as u64).min(end - at) as usize;
            match self.page(p) {
                Some(page) => out.extend_from_slice(&page[o..o + n]),
                None => out.resize(out.len() + n, 0),
            }
            at += n as u64;
        }
        out
    }

    /// The page to modify: a copy of what readers see, made dirty.
    fn page_mut(&mut self, p: u64) -> &mut Page {
        if !self.dirty.contains_key(&p) {
            let page = self.page(p).cloned().unwrap_or_else(|| Box::new([0; PAGE as usize]));
            self.dirty.insert(p, page);
        }
        self.dirty.get_mut(&p).expect("just inserted")
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let (p, o) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - o).min(data.len() - done);
            self.page_mut(p)[o..o + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        self.len = self.len.max(offset + data.len() as u64);
    }

    fn truncate(&mut self, size: u64) {
        if size < self.len {
            if !size.is_multiple_of(PAGE) {
                let o = (size % PAGE) as usize;
                self.page_mut(size / PAGE)[o..].fill(0);
            }
            let first_gone = size.div_ceil(PAGE);
            self.dirty.retain(|p, _| *p < first_gone);
            self.cut_from = self.cut_from.min(first_gone * PAGE);
        }
        self.len = size;
    }

    /// fsync / fdatasync: what readers see becomes what a cut keeps.
    fn sync(&mut self) {
        let first_gone = self.cut_from / PAGE;
        self.durable.retain(|p, _| *p < first_gone);
        self.durable.extend(self.dirty.drain());
        self.durable_len = self.len;
        self.cut_from = u64::MAX;
    }

    /// Bytes a cut now would lose (pages written since the last sync).
    fn unsynced(&self) -> u64 {
        self.dirty.len() as u64 * PAGE + u64::from(self.len != self.durable_len)
    }

    fn cut(&mut self) {
        self.dirty.clear();
        self.len = self.durable_len;
        self.cut_from = u64::MAX;
    }
}

enum Node {
    File(File),
    /// Names as programs see them, and as a cut would leave them.
    Dir {
        live: BTreeMap<OsString, u64>,
        durable: BTreeMap<OsString, u64>,
    },
}

/// What a cut threw away.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lost {
    /// Bytes of file content written and never synced.
    pub bytes: u64,
    /// Directory entries created, renamed or removed and never synced.
    pub names: u64,
}

struct State {
    nodes: HashMap<u64, Node>,
    next: u64,
}

const ROOT: u64 = 1;

impl State {
    fn new() -> State {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::Dir { live: BTreeMap::new(), durable: BTreeMap::new() });
        State { nodes, next: ROOT + 1 }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, size, perm, nlink) = match self.nodes.get(&ino)? {
            Node::File(f) => (FileType::RegularFile, f.len, 0o644, 1),
            Node::Dir { .. } => (FileType::Directory, 0, 0o755, 2),
        };
        let t = SystemTime::UNIX_EPOCH;
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: PAGE as u32,
            flags: 0,
        })
    }

    fn dir(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir { live, .. }) => Ok(live),
            Some(Node::File(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn file(&mut self, ino: u64) -> Result<&mut File, Errno> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Ok(f),
            Some(Node::Dir { .. }) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn lookup(&mut self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.dir(parent)?.get(name).copied().ok_or(Errno::ENOENT)
    }

    fn create(&mut self, parent: u64, name: &OsStr, node: Node) -> Result<FileAttr, Errno> {
        if self.dir(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(ino, node);
        self.dir(parent)?.insert(name.to_os_string(), ino);
        Ok(self.attr(ino).expect("just created"))
    }

    /// fsync, fdatasync (a file's content and length) or fsync of a
    /// directory (its names): what programs see becomes what a cut keeps.
    fn sync(&mut self, ino: u64) -> Result<(), Errno> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => f.sync(),
            Some(Node::Dir { live, durable }) => *durable = live.clone(),
            None => return Err(Errno::ENOENT),
        }
        Ok(())
    }

    fn cut(&mut self) -> Lost {
        let mut lost = Lost::default();
        for node in self.nodes.values_mut() {
            match node {
                Node::File(f) => {
                    lost.bytes += f.unsynced();
                    f.cut();
                }
                Node::Dir { live, durable } => {
                    lost.names += live.iter().filter(|(n, i)| durable.get(*n) != Some(i)).count() as u64;
                    lost.names += durable.keys().filter(|n| !live.contains_key(*n)).count() as u64;
                    *live = durable.clone();
                }
            }
        }
        lost
    }
}

/// The file system as FUSE serves it.
struct Fs(Arc<Mutex<State>>);

impl Fs {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
}

fn direct() -> FopenFlags {
    FopenFlags::FOPEN_DIRECT_IO
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.state();
        match s.lookup(parent.0, name) {
            Ok(ino) => reply.entry(&NO_CACHE, &s.attr(ino).unwrap(), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0) {
            Some(a) => reply.attr(&NO_CACHE, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.state();
        if let Some(size) = size {
            match s.file(ino.0) {
                Ok(f) => f.truncate(size),
                Err(e) => return reply.error(e),
            }
        }
        match s.attr(ino.0) {
            Some(a) => reply.attr(&NO_CACHE, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let dir = Node::Dir { live: BTreeMap::new(), durable: BTreeMap::new() };
        match self.state().create(parent.0, name, dir) {
            Ok(a) => reply.entry(&NO_CACHE, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.state().create(parent.0, name, Node::File(File { cut_from: u64::MAX, ..File::default() }))
        {
            Ok(a) => reply.created(&NO_CACHE, &a, Generation(0), FileHandle(0), direct()),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.state();
        match s.dir(parent.0).map(|d| d.remove(name)) {
            Ok(Some(_)) => reply.ok(),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.state();
        let ino = match s.lookup(parent.0, name) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        match s.dir(ino) {
            Ok(d) if !d.is_empty() => return reply.error(Errno::ENOTEMPTY),
            Ok(_) => {}
            Err(e) => return reply.error(e),
        }
        s.dir(parent.0).unwrap().remove(name);
        reply.ok();
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state();
        let ino = match s.lookup(parent.0, name) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        if let Err(e) = s.dir(newparent.0) {
            return reply.error(e);
        }
        s.dir(parent.0).unwrap().remove(name);
        s.dir(newparent.0).unwrap().insert(newname.to_os_string(), ino);
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.state().nodes.get(&ino.0) {
            Some(_) => reply.opened(FileHandle(0), direct()),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        match self.state().file(ino.0) {
            Ok(f) => reply.data(&f.read(offset, u64::from(size))),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.state().file(ino.0) {
            Ok(f) => {
                f.write(offset, data);
                reply.written(data.len() as u32)
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lo: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match self.state().sync(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let mut s = self.state();
        let entries: Vec<(OsString, u64)> = match s.dir(ino.0) {
            Ok(d) => d.iter().map(|(n, i)| (n.clone(), *i)).collect(),
            Err(e) => return reply.error(e),
        };
        let mut all = vec![(OsString::from("."), ino.0), (OsString::from(".."), ROOT)];
        all.extend(entries);
        for (i, (name, child)) in all.into_iter().enumerate().skip(offset as usize) {
            let kind = match s.nodes.get(&child) {
                Some(Node::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match self.state().sync(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, PAGE as u32, 255, PAGE as u32);
    }
}

/// A mounted power-cut file system; unmounted when dropped.
pub struct Disk {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    _session: fuser::BackgroundSession,
}

impl Disk {
    /// Mounts an empty file system at `path` (created if missing).
    pub fn mount(path: &Path) -> std::io::Result<Disk> {
        std::fs::create_dir_all(path)?;
        let state = Arc::new(Mutex::new(State::new()));
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("wardsync-powercut".into()), MountOption::RW];
        let session = fuser::spawn_mount(Fs(state.clone()), path, &config)?;
        Ok(Disk { state, path: path.to_path_buf(), _session: session })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The power cut: everything not synced is gone. Stop the node first.
    pub fn cut(&self) -> Lost {
        self.state.lock().unwrap().cut()
    }
}
