//! What `/proc` tells about who holds a file of this mount open: asked when a file emptied
//! at open and not written yet is flushed, to tell a shell closing the duplicate of a
//! redirect (the command has yet to write) from a program closing its last descriptor
//! (whose `close` should see the commit and its error).

use std::path::Path;

/// This process's id for the mount at `mountpoint` (`/proc/self/mountinfo`'s first field;
/// the last line for that mount point, which is the mount on top).
pub fn mount_id(mountpoint: &Path) -> Option<u64> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mountpoint.to_str()?;
    info.lines().rev().find_map(|l| {
        let mut f = l.split(' ');
        let id = f.next()?.parse().ok()?;
        (unescape(f.nth(3)?) == want).then_some(id)
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether process `pid` has a descriptor open on inode `ino` of the mount `mnt_id` (any
/// mount when unknown). A descriptor being closed has already left the table; an exiting
/// process has none. Unreadable `/proc` answers no: the flush then commits, as it always may.
pub fn holds(pid: u32, mnt_id: Option<u64>, ino: u64) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return false;
    };
    dir.filter_map(Result::ok).any(|e| {
        let Ok(info) = std::fs::read_to_string(e.path()) else {
            return false;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        field("ino:") == Some(ino) && (mnt_id.is_none() || field("mnt_id:") == mnt_id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn mountinfo_escapes_are_read() {
        assert_eq!(unescape(r"/mnt/a\040b\134c"), "/mnt/a b\\c");
        assert_eq!(unescape(r"/x\04"), r"/x\04");
    }

    #[test]
    fn this_process_holds_what_it_opened_and_not_what_it_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = std::fs::File::create(&path).unwrap();
        let ino = f.metadata().unwrap().ino();
        let me = std::process::id();
        assert!(holds(me, None, ino));
        drop(f);
        assert!(!holds(me, None, ino));
        assert!(mount_id(Path::new("/")).is_some());
    }
}
