//! A test filesystem that loses what was not made durable, as a power cut would — what
//! LazyFS does, in memory, with fuser. A file's data (and size, and extended attributes)
//! becomes durable when the file is fsynced; a directory's entries (new names, renames,
//! unlinks) when the directory is fsynced. [`LazyFs::power_cut`] unmounts (the kernel's page
//! cache goes with the mount), keeps only what was durable, and mounts again.
//!
//! kill -9 alone keeps the kernel's page cache, so a crash test passes with every fsync
//! removed; on this filesystem it does not.

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

const ROOT: u64 = 1;
const TTL: Duration = Duration::ZERO;

#[derive(Clone)]
struct Node {
    dir: bool,
    /// (copy-on-write: a durable snapshot shares the bytes until the next write)
    data: Arc<Vec<u8>>,
    entries: BTreeMap<OsString, u64>,
    xattrs: BTreeMap<OsString, Vec<u8>>,
    mode: u32,
    mtime: SystemTime,
}

impl Node {
    fn new(dir: bool, mode: u32) -> Node {
        Node {
            dir,
            data: Arc::new(vec![]),
            entries: BTreeMap::new(),
            xattrs: BTreeMap::new(),
            mode: mode & 0o7777,
            mtime: SystemTime::now(),
        }
    }
}

#[derive(Default)]
struct State {
    /// What the running system sees.
    live: HashMap<u64, Node>,
    /// Per inode, what its last fsync made durable (a file's data, a directory's entries).
    durable: HashMap<u64, Node>,
    next: u64,
    fsyncs: u64,
}

impl State {
    fn fresh() -> State {
        let mut s = State {
            next: ROOT + 1,
            ..State::default()
        };
        s.live.insert(ROOT, Node::new(true, 0o755));
        s.durable.insert(ROOT, Node::new(true, 0o755));
        s
    }

    /// The power cut: only what is reachable from the root through durable entries stays,
    /// each node as durable as it was (a name that is durable for a node never fsynced: an
    /// empty file or directory).
    fn cut(&mut self) {
        let mut live = HashMap::new();
        let mut todo = vec![ROOT];
        while let Some(ino) = todo.pop() {
            let was_dir = self.live.get(&ino).map(|n| n.dir);
            let node = match self.durable.get(&ino) {
                Some(n) => n.clone(),
                None => Node::new(was_dir.unwrap_or(false), 0o644),
            };
            if node.dir {
                todo.extend(node.entries.values().copied());
            }
            live.insert(ino, node);
        }
        self.durable.retain(|ino, _| live.contains_key(ino));
        self.live = live;
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let n = self.live.get(&ino)?;
        Some(FileAttr {
            ino: INodeNo(ino),
            size: if n.dir { 0 } else { n.data.len() as u64 },
            blocks: (n.data.len() as u64).div_ceil(512),
            atime: n.mtime,
            mtime: n.mtime,
            ctime: n.mtime,
            crtime: n.mtime,
            kind: if n.dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: n.mode as u16,
            nlink: if n.dir { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        let p = self.live.get(&parent).ok_or(Errno::ENOENT)?;
        if !p.dir {
            return Err(Errno::ENOTDIR);
        }
        p.entries.get(name).copied().ok_or(Errno::ENOENT)
    }

    fn make(&mut self, parent: u64, name: &OsStr, dir: bool, mode: u32) -> Result<FileAttr, Errno> {
        if self.child(parent, name).is_ok() {
            return Err(Errno::EEXIST);
        }
        let ino = self.next;
        self.next += 1;
        self.live.insert(ino, Node::new(dir, mode));
        let p = self.live.get_mut(&parent).ok_or(Errno::ENOENT)?;
        p.entries.insert(name.to_os_string(), ino);
        p.mtime = SystemTime::now();
        Ok(self.attr(ino).expect("just made"))
    }
}

struct Fs(Arc<Mutex<State>>);

impl Fs {
    fn st(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let st = self.st();
        match st.child(parent.0, name) {
            Ok(ino) => reply.entry(&TTL, &st.attr(ino).expect("linked"), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.st().attr(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut st = self.st();
        let Some(n) = st.live.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(m) = mode {
            n.mode = m & 0o7777;
        }
        if let Some(s) = size {
            Arc::make_mut(&mut n.data).resize(s as usize, 0);
            n.mtime = SystemTime::now();
        }
        match mtime {
            Some(TimeOrNow::SpecificTime(t)) => n.mtime = t,
            Some(TimeOrNow::Now) => n.mtime = SystemTime::now(),
            None => {}
        }
        reply.attr(&TTL, &st.attr(ino.0).expect("present"));
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        match self.st().make(parent.0, name, false, mode) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        match self.st().make(parent.0, name, true, mode) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.st().make(parent.0, name, false, mode) {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.st();
        match st.child(parent.0, name) {
            Ok(ino) if st.live[&ino].dir => reply.error(Errno::EISDIR),
            Ok(_) => {
                let p = st.live.get_mut(&parent.0).expect("checked");
                p.entries.remove(name);
                p.mtime = SystemTime::now();
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.st();
        match st.child(parent.0, name) {
            Ok(ino) if !st.live[&ino].dir => reply.error(Errno::ENOTDIR),
            Ok(ino) if !st.live[&ino].entries.is_empty() => reply.error(Errno::from_i32(libc::ENOTEMPTY)),
            Ok(_) => {
                st.live.get_mut(&parent.0).expect("checked").entries.remove(name);
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
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
        let mut st = self.st();
        let ino = match st.child(parent.0, name) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        if let Ok(old) = st.child(newparent.0, newname) {
            if st.live[&old].dir && !st.live[&old].entries.is_empty() {
                return reply.error(Errno::from_i32(libc::ENOTEMPTY));
            }
        }
        if !st.live.get(&newparent.0).is_some_and(|n| n.dir) {
            return reply.error(Errno::ENOTDIR);
        }
        st.live.get_mut(&parent.0).expect("checked").entries.remove(name);
        st.live
            .get_mut(&newparent.0)
            .expect("checked")
            .entries
            .insert(newname.to_os_string(), ino);
        reply.ok()
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.st().live.contains_key(&ino.0) {
            reply.opened(FileHandle(0), FopenFlags::empty())
        } else {
            reply.error(Errno::ENOENT)
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
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let st = self.st();
        let Some(n) = st.live.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let start = (offset as usize).min(n.data.len());
        let end = (start + size as usize).min(n.data.len());
        reply.data(&n.data[start..end]);
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
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut st = self.st();
        let Some(n) = st.live.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let buf = Arc::make_mut(&mut n.data);
        let end = offset as usize + data.len();
        if buf.len() < end {
            buf.resize(end, 0);
        }
        buf[offset as usize..end].copy_from_slice(data);
        n.mtime = SystemTime::now();
        reply.written(data.len() as u32);
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let mut st = self.st();
        st.fsyncs += 1;
        let Some(n) = st.live.get(&ino.0).cloned() else {
            return reply.error(Errno::ENOENT);
        };
        // A file's data and attributes; its directory entries stay as durable as they were.
        let entries = st.durable.get(&ino.0).map(|d| d.entries.clone()).unwrap_or_default();
        st.durable.insert(ino.0, Node { entries, ..n });
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let mut st = self.st();
        st.fsyncs += 1;
        let Some(n) = st.live.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let entries = n.entries.clone();
        let d = st.durable.entry(ino.0).or_insert_with(|| Node::new(true, 0o755));
        d.entries = entries;
        reply.ok();
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let st = self.st();
        let Some(n) = st.live.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let mut all: Vec<(u64, FileType, OsString)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        for (name, child) in &n.entries {
            let kind = if st.live.get(child).is_some_and(|c| c.dir) {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            all.push((*child, kind, name.clone()));
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        match self.st().live.get_mut(&ino.0) {
            Some(n) => {
                n.xattrs.insert(name.to_os_string(), value.to_vec());
                reply.ok()
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let st = self.st();
        let Some(v) = st.live.get(&ino.0).and_then(|n| n.xattrs.get(name)) else {
            return reply.error(Errno::from_i32(libc::ENODATA));
        };
        if size == 0 {
            reply.size(v.len() as u32)
        } else if (size as usize) < v.len() {
            reply.error(Errno::from_i32(libc::ERANGE))
        } else {
            reply.data(v)
        }
    }
}

/// The filesystem, mounted; survives its own power cuts.
pub struct LazyFs {
    mountpoint: PathBuf,
    state: Arc<Mutex<State>>,
    session: Option<fuser::BackgroundSession>,
}

impl LazyFs {
    pub fn mount(mountpoint: &Path) -> LazyFs {
        let mut fs = LazyFs {
            mountpoint: mountpoint.to_path_buf(),
            state: Arc::new(Mutex::new(State::fresh())),
            session: None,
        };
        fs.attach();
        fs
    }

    fn attach(&mut self) {
        let mut config = fuser::Config::default();
        config.mount_options = vec![fuser::MountOption::FSName("lazyfs".into())];
        config.n_threads = Some(2);
        let s =
            fuser::spawn_mount(Fs(self.state.clone()), &self.mountpoint, &config).expect("mount the test filesystem");
        self.session = Some(s);
    }

    fn detach(&mut self) {
        if let Some(s) = self.session.take() {
            s.umount_and_join().expect("unmount the test filesystem");
        }
    }

    /// Everything as it is now becomes durable (the setup a test starts from).
    pub fn sync_all(&self) {
        let mut st = self.state.lock().unwrap();
        st.durable = st.live.clone();
    }

    /// Cuts the power: whatever was not fsynced is gone, and so is the kernel's cache of this
    /// filesystem (unmounted and mounted again). Nothing may hold a file open here.
    pub fn power_cut(&mut self) {
        self.detach();
        self.state.lock().unwrap().cut();
        self.attach();
    }

    /// fsync and fsyncdir calls so far.
    pub fn fsyncs(&self) -> u64 {
        self.state.lock().unwrap().fsyncs
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}
