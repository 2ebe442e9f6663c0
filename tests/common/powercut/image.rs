//! The image a power-cut disk keeps: every file's pages as programs see
//! them and as they were last synced, every directory's names likewise,
//! and each node's owner and permissions (kept at once: they are set up
//! before a run, not raced by it).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileType, INodeNo};

pub(super) const PAGE: u64 = 4096;

type Page = Box<[u8; PAGE as usize]>;

/// A file: its durable pages and length, and the pages written since.
#[derive(Default)]
pub(super) struct File {
    durable: HashMap<u64, Page>,
    durable_len: u64,
    dirty: HashMap<u64, Page>,
    len: u64,
    /// Durable bytes at or past this offset were truncated away (not yet synced).
    cut_from: u64,
}

impl File {
    /// A new, empty file (nothing of it durable yet).
    pub(super) fn empty() -> File {
        File { cut_from: u64::MAX, ..File::default() }
    }

    fn page(&self, p: u64) -> Option<&Page> {
        self.dirty.get(&p).or_else(|| if p * PAGE < self.cut_from { self.durable.get(&p) } else { None })
    }

    pub(super) fn read(&self, offset: u64, size: u64) -> Vec<u8> {
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

    pub(super) fn write(&mut self, offset: u64, data: &[u8]) {
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

    pub(super) fn truncate(&mut self, size: u64) {
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

pub(super) enum Node {
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

/// A node's owner and permission bits.
#[derive(Clone, Copy)]
pub(super) struct Meta {
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

pub(super) struct State {
    pub(super) nodes: HashMap<u64, Node>,
    meta: HashMap<u64, Meta>,
    next: u64,
}

pub(super) const ROOT: u64 = 1;

impl State {
    pub(super) fn new() -> State {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::Dir { live: BTreeMap::new(), durable: BTreeMap::new() });
        let meta = HashMap::from([(ROOT, Meta { perm: 0o755, uid: 0, gid: 0 })]);
        State { nodes, meta, next: ROOT + 1 }
    }

    pub(super) fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, size, nlink) = match self.nodes.get(&ino)? {
            Node::File(f) => (FileType::RegularFile, f.len, 1),
            Node::Dir { .. } => (FileType::Directory, 0, 2),
        };
        let Meta { perm, uid, gid } = self.meta[&ino];
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
            uid,
            gid,
            rdev: 0,
            blksize: PAGE as u32,
            flags: 0,
        })
    }

    pub(super) fn dir(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir { live, .. }) => Ok(live),
            Some(Node::File(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    pub(super) fn file(&mut self, ino: u64) -> Result<&mut File, Errno> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Ok(f),
            Some(Node::Dir { .. }) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    pub(super) fn lookup(&mut self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.dir(parent)?.get(name).copied().ok_or(Errno::ENOENT)
    }

    /// chmod, chown.
    pub(super) fn set_meta(&mut self, ino: u64, mode: Option<u32>, uid: Option<u32>, gid: Option<u32>) {
        if let Some(m) = self.meta.get_mut(&ino) {
            m.perm = mode.map_or(m.perm, |mode| (mode & 0o7777) as u16);
            m.uid = uid.unwrap_or(m.uid);
            m.gid = gid.unwrap_or(m.gid);
        }
    }

    pub(super) fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        node: Node,
        meta: Meta,
    ) -> Result<FileAttr, Errno> {
        if self.dir(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(ino, node);
        self.meta.insert(ino, meta);
        self.dir(parent)?.insert(name.to_os_string(), ino);
        Ok(self.attr(ino).expect("just created"))
    }

    /// fsync, fdatasync (a file's content and length) or fsync of a
    /// directory (its names): what programs see becomes what a cut keeps.
    pub(super) fn sync(&mut self, ino: u64) -> Result<(), Errno> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => f.sync(),
            Some(Node::Dir { live, durable }) => *durable = live.clone(),
            None => return Err(Errno::ENOENT),
        }
        Ok(())
    }

    pub(super) fn cut(&mut self) -> Lost {
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
