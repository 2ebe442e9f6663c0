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

mod image;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    Config, Errno, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, MountOption, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, WriteFlags,
};
pub use image::Lost;
use image::{File, Meta, Node, PAGE, ROOT, State};

const NO_CACHE: Duration = Duration::ZERO;

/// The file system as FUSE serves it.
struct Fs(Arc<Mutex<State>>);

impl Fs {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
}

/// The owner and permissions of a node `req` creates.
fn meta(req: &Request, mode: u32, umask: u32) -> Meta {
    Meta { perm: (mode & !umask & 0o7777) as u16, uid: req.uid(), gid: req.gid() }
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
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
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
        s.set_meta(ino.0, mode, uid, gid);
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

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let dir = Node::Dir { live: BTreeMap::new(), durable: BTreeMap::new() };
        match self.state().create(parent.0, name, dir, meta(req, mode, umask)) {
            Ok(a) => reply.entry(&NO_CACHE, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.state().create(parent.0, name, Node::File(File::empty()), meta(req, mode, umask)) {
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
        // Root lets other users in too (a server run as its own user, as
        // PostgreSQL is); only root may without /etc/fuse.conf's consent.
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            config.acl = fuser::SessionACL::All;
        }
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
