//! The only file that knows fuser: each callback converts its arguments, runs one core method
//! on the runtime, and replies or hands the error to [`fail`]. No decisions live here.

use crate::client::{Registry, Storage};
use crate::fs::{Attr, DirSink, Fs, FsError, Ino, Kind, PageCache};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

pub struct FuseFs<S: Storage> {
    fs: Arc<Fs<S>>,
    rt: tokio::runtime::Handle,
    /// This mount's id in `/proc/*/fdinfo`, known once the kernel has the mount.
    mount_id: Arc<OnceLock<Option<u64>>>,
}

impl<S: Storage + Registry> FuseFs<S> {
    /// Metafiles and views following the registry bypass the page cache (their content can
    /// change under the kernel), and so do writers: their data goes to the block pipeline
    /// anyway, and the buffered path costs the writing process a page-cache page per 4 KiB
    /// (1 GiB in 4 MiB writes, O_DIRECT vs buffered: 1.5 s vs 2.2 s, kernel time 0.4 s vs
    /// 1.1 s; cp of 1 GiB, 6 runs: 4.2 s vs 4.4 s). mmap still works
    /// (FUSE_DIRECT_IO_ALLOW_MMAP).
    ///
    /// Readers keep the kernel's cache while it holds their version (see `page_cache.rs`).
    fn open_flags(&self, ino: Ino, fh: u64) -> FopenFlags {
        if self.fs.follows_registry(ino) || self.fs.is_writer(fh) {
            return FopenFlags::FOPEN_DIRECT_IO;
        }
        match self.fs.page_cache_of(fh) {
            Some(PageCache::Keep) => FopenFlags::FOPEN_KEEP_CACHE,
            // Going around the cache must not drop it for the readers that use it.
            Some(PageCache::Bypass) => FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_KEEP_CACHE,
            Some(PageCache::Refill) | None => FopenFlags::empty(),
        }
    }

    fn new(fs: Arc<Fs<S>>, rt: tokio::runtime::Handle, mount_id: Arc<OnceLock<Option<u64>>>) -> FuseFs<S> {
        FuseFs { fs, rt, mount_id }
    }

    fn ttl(&self) -> Duration {
        self.fs.attr_ttl()
    }

    /// Metafiles are never cached by the kernel: their content and size follow the registry,
    /// and they move with their image.
    fn ttl_of(&self, ino: Ino) -> Duration {
        if self.fs.follows_registry(ino) {
            Duration::ZERO
        } else {
            self.ttl()
        }
    }
}

/// How the kernel is to show the mount.
pub struct SessionOptions {
    /// What `mount` lists as the source.
    pub source: String,
    pub read_only: bool,
    /// Other users may enter (with the kernel checking file modes).
    pub allow_other: bool,
    /// Threads answering the kernel.
    pub threads: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot mount on {path}: {source}")]
    Mount { path: String, source: std::io::Error },
    #[error("FUSE session ended: {0}")]
    Ended(std::io::Error),
}

/// Mounts `fs` at `mountpoint` (an absolute path) and serves the kernel until the mount
/// goes away; SIGTERM or SIGINT unmount. `mounted` runs once the kernel has the mount.
pub fn serve<S: Storage + Registry + 'static>(
    fs: Arc<Fs<S>>,
    rt: tokio::runtime::Handle,
    mountpoint: &Path,
    opts: &SessionOptions,
    mounted: impl FnOnce(),
) -> Result<(), SessionError> {
    let mount_id = Arc::new(OnceLock::new());
    let fuse = FuseFs::new(fs, rt, mount_id.clone());
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(opts.source.clone()),
        fuser::MountOption::Subtype("imgfs".into()),
    ];
    if opts.read_only {
        config.mount_options.push(fuser::MountOption::RO);
    }
    if opts.allow_other {
        config.acl = fuser::SessionACL::All;
        config.mount_options.push(fuser::MountOption::DefaultPermissions);
    }
    config.n_threads = Some(opts.threads);
    let mut session = fuser::Session::new(fuse, mountpoint, &config).map_err(|source| SessionError::Mount {
        path: mountpoint.display().to_string(),
        source,
    })?;
    let _ = mount_id.set(crate::fs::procfs::mount_id(mountpoint));
    let mut unmounter = session.unmount_callable();
    std::thread::spawn(move || {
        let mut signal = 0;
        // Block until SIGTERM or SIGINT, then unmount, which ends the session loop.
        // SAFETY: the set is initialized by sigemptyset before use; sigwait only reads it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigwait(&set, &mut signal);
        }
        tracing::info!(signal, "unmounting");
        if let Err(e) = unmounter.unmount() {
            tracing::error!("unmount failed: {e}");
        }
    });
    mounted();
    session.run().map_err(SessionError::Ended)
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: kind(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4 << 20,
        flags: 0,
    }
}

/// A negative entry: node id 0 tells the kernel the name is missing, for the entry's TTL.
fn absent() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

fn kind(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
    }
}

/// Logs a failed operation (expected misses quietly) and returns its errno.
fn fail(op: &str, ino: u64, req: &Request, e: &FsError) -> Errno {
    if e.quiet {
        tracing::debug!(op, ino, pid = req.pid(), errno = e.errno, "{}", e.message);
    } else {
        tracing::warn!(op, ino, pid = req.pid(), errno = e.errno, "{}", e.message);
    }
    Errno::from_i32(e.errno)
}

fn name_str(name: &OsStr) -> Result<&str, FsError> {
    name.to_str()
        .ok_or_else(|| FsError::new(libc::EINVAL, "names must be UTF-8"))
}

struct Plain<'a>(&'a mut ReplyDirectory);
impl DirSink for Plain<'_> {
    fn add(&mut self, ino: Ino, offset: u64, name: &str, attr: &Attr) -> bool {
        self.0.add(INodeNo(ino), offset, kind(attr.kind), name)
    }
}

struct Plus<'a>(&'a mut ReplyDirectoryPlus, Duration);
impl DirSink for Plus<'_> {
    fn add(&mut self, ino: Ino, offset: u64, name: &str, attr: &Attr) -> bool {
        let ttl = if crate::api::metafile::image_name(name).is_some() {
            Duration::ZERO
        } else {
            self.1
        };
        self.0
            .add(INodeNo(ino), offset, name, &ttl, &file_attr(attr), Generation(0))
    }
    fn gives_entries(&self) -> bool {
        true
    }
}

impl<S: Storage + Registry> Filesystem for FuseFs<S> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        // O_TRUNC comes with open (so a rewrite is one new version, not an empty one first);
        // readdirplus fills attributes from the listing.
        for f in [
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP,
        ] {
            let _ = config.add_capabilities(f);
        }
        Ok(())
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = name_str(name).and_then(|n| self.rt.block_on(self.fs.lookup(parent.0, n)));
        match r {
            Ok(a) => reply.entry(&self.ttl_of(a.ino), &file_attr(&a), Generation(0)),
            // A miss is remembered by the kernel for the attribute TTL, as hits are (node id 0
            // is a negative entry): `mv`, shells and editors look a missing name up several
            // times, and each look costs a HEAD and a listing.
            Err(e) if e.errno == libc::ENOENT && self.fs.may_cache_absence(parent.0, &name.to_string_lossy()) => {
                fail("lookup", parent.0, req, &e);
                reply.entry(&self.ttl(), &absent(), Generation(0))
            }
            Err(e) => reply.error(fail("lookup", parent.0, req, &e)),
        }
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.rt.block_on(self.fs.getattr(ino.0)) {
            Ok(a) => reply.attr(&self.ttl_of(a.ino), &file_attr(&a)),
            Err(e) => reply.error(fail("getattr", ino.0, req, &e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Mode, owner and times cannot be stored; they are accepted quietly (cp -p, editors).
        let r = match size {
            Some(s) => self.rt.block_on(self.fs.set_size(ino.0, fh.map(|f| f.0), s)),
            None => self.rt.block_on(self.fs.getattr(ino.0)),
        };
        match r {
            Ok(a) => reply.attr(&self.ttl_of(a.ino), &file_attr(&a)),
            Err(e) => reply.error(fail("setattr", ino.0, req, &e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let r = if mode & libc::S_IFMT != libc::S_IFREG {
            Err(FsError::new(libc::EPERM, "only regular files and directories"))
        } else {
            name_str(name).and_then(|n| self.rt.block_on(self.fs.make_file(parent.0, n)))
        };
        match r {
            Ok(a) => {
                self.fs.written_by(a.ino, req.pid());
                reply.entry(&self.ttl_of(a.ino), &file_attr(&a), Generation(0))
            }
            Err(e) => reply.error(fail("mknod", parent.0, req, &e)),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        let r = name_str(name).and_then(|n| self.rt.block_on(self.fs.mkdir(parent.0, n)));
        match r {
            Ok(a) => {
                self.fs.written_by(a.ino, req.pid());
                reply.entry(&self.ttl(), &file_attr(&a), Generation(0))
            }
            Err(e) => reply.error(fail("mkdir", parent.0, req, &e)),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match name_str(name).and_then(|n| self.rt.block_on(self.fs.unlink(parent.0, n))) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("unlink", parent.0, req, &e)),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match name_str(name).and_then(|n| self.rt.block_on(self.fs.rmdir(parent.0, n))) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("rmdir", parent.0, req, &e)),
        }
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let noreplace = flags == RenameFlags::RENAME_NOREPLACE;
        if !flags.is_empty() && !noreplace {
            // RENAME_EXCHANGE (and WHITEOUT) have no server-side form.
            reply.error(fail(
                "rename",
                parent.0,
                req,
                &FsError::quiet(libc::EINVAL, "only the RENAME_NOREPLACE flag is supported"),
            ));
            return;
        }
        let r = name_str(name).and_then(|n| {
            let nn = name_str(newname)?;
            if noreplace {
                self.rt.block_on(self.fs.rename_noreplace(parent.0, n, newparent.0, nn))
            } else {
                self.rt.block_on(self.fs.rename(parent.0, n, newparent.0, nn))
            }
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("rename", parent.0, req, &e)),
        }
    }

    /// Objects have no symbolic or hard links; EPERM is what filesystems without them answer
    /// (emacs's lock files take it in their stride).
    fn symlink(&self, _req: &Request, _parent: INodeNo, name: &OsStr, _target: &std::path::Path, reply: ReplyEntry) {
        tracing::debug!(?name, "symlink: not supported");
        reply.error(Errno::EPERM);
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        tracing::debug!(?name, "link: not supported");
        reply.error(Errno::EPERM);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.rt.block_on(self.fs.open(ino.0, flags.0)) {
            Ok(fh) => {
                if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
                    self.fs.written_by(ino.0, req.pid());
                }
                reply.opened(FileHandle(fh), self.open_flags(ino.0, fh))
            }
            Err(e) => reply.error(fail("open", ino.0, req, &e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let r = name_str(name).and_then(|n| self.rt.block_on(self.fs.create(parent.0, n, flags)));
        match r {
            Ok((a, fh)) => {
                self.fs.written_by(a.ino, req.pid());
                reply.created(
                    &self.ttl_of(a.ino),
                    &file_attr(&a),
                    Generation(0),
                    FileHandle(fh),
                    self.open_flags(a.ino, fh),
                )
            }
            Err(e) => reply.error(fail("create", parent.0, req, &e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.rt.block_on(self.fs.read(fh.0, offset, size)) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(fail("read", ino.0, req, &e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.rt.block_on(self.fs.write(fh.0, offset, data)) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(fail("write", ino.0, req, &e)),
        }
    }

    fn flush(&self, req: &Request, ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        let (pid, mount_id) = (req.pid(), self.mount_id.get().copied().flatten());
        let still_held = || crate::fs::procfs::holds(pid, mount_id, ino.0);
        match self.rt.block_on(self.fs.flush(fh.0, still_held)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("flush", ino.0, req, &e)),
        }
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.rt.block_on(self.fs.release(fh.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("release", ino.0, req, &e)),
        }
    }

    fn fsync(&self, req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match self.rt.block_on(self.fs.fsync(fh.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("fsync", ino.0, req, &e)),
        }
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.rt.block_on(self.fs.opendir(ino.0)) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(fail("opendir", ino.0, req, &e)),
        }
    }

    fn readdir(&self, req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        match self
            .rt
            .block_on(self.fs.readdir(ino.0, fh.0, offset, &mut Plain(&mut reply)))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("readdir", ino.0, req, &e)),
        }
    }

    fn readdirplus(&self, req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let ttl = self.ttl();
        match self
            .rt
            .block_on(self.fs.readdir(ino.0, fh.0, offset, &mut Plus(&mut reply, ttl)))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("readdirplus", ino.0, req, &e)),
        }
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.fs.release_handle(fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        match self.rt.block_on(self.fs.statfs()) {
            Ok((blocks, free)) => reply.statfs(blocks, free, free, 0, 0, 4096, crate::fs::NAME_MAX as u32, 4096),
            Err(e) => reply.error(fail("statfs", ino.0, req, &e)),
        }
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match name_str(name).and_then(|n| self.rt.block_on(self.fs.getxattr(ino.0, n, req.pid()))) {
            Ok(v) => xattr_reply(reply, &v, size),
            Err(e) => reply.error(fail("getxattr", ino.0, req, &e)),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.rt.block_on(self.fs.listxattr(ino.0, req.pid())) {
            Ok(names) => {
                let mut out = Vec::new();
                for n in names {
                    out.extend_from_slice(n.as_bytes());
                    out.push(0);
                }
                xattr_reply(reply, &out, size)
            }
            Err(e) => reply.error(fail("listxattr", ino.0, req, &e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        match name_str(name).and_then(|n| self.rt.block_on(self.fs.setxattr(ino.0, n, value, req.pid()))) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("setxattr", ino.0, req, &e)),
        }
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match name_str(name).and_then(|n| self.rt.block_on(self.fs.removexattr(ino.0, n))) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("removexattr", ino.0, req, &e)),
        }
    }

    fn copy_file_range(
        &self,
        req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        match self
            .rt
            .block_on(self.fs.copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len))
        {
            // The kernel's reply carries a u32; a whole-object copy larger than that reports
            // what fits, and the caller's next call (at that offset) reports the end.
            Ok(n) => reply.written(n.min(u32::MAX as u64 & !0xfff) as u32),
            Err(e) => reply.error(fail("copy_file_range", ino_in.0, req, &e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

/// Answers a size probe (`size` 0) with the length, else the bytes if they fit.
fn xattr_reply(reply: ReplyXattr, data: &[u8], size: u32) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::from_i32(libc::ERANGE));
    } else {
        reply.data(data);
    }
}
