//! The few file and process operations WASI's `std::fs` cannot do alone:
//! link counts, permission bits, ownership and running programs. Inside
//! the sandbox they go through the opsd host (and only reach the job's
//! grants); natively, for unit tests, through the OS directly.

use std::io;
use std::time::SystemTime;

/// What rotation needs to know about a path, without following a final
/// symlink.
#[derive(Debug, Clone)]
pub struct Meta {
    pub is_dir: bool,
    pub is_file: bool,
    pub is_symlink: bool,
    pub nlink: u64,
    pub size: u64,
    pub mtime: SystemTime,
    pub atime: SystemTime,
    /// Permission bits (lower 12); 0 for symlinks.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// `lstat(2)`: type, links, size and times; for files and directories
/// also mode and ownership.
pub fn lstat(path: &str) -> io::Result<Meta> {
    meta(path, std::fs::symlink_metadata(path)?)
}

/// `stat(2)`: like [`lstat`], following symlinks.
pub fn stat(path: &str) -> io::Result<Meta> {
    let m = lstat(path)?;
    if m.is_symlink {
        return meta(path, std::fs::metadata(path)?);
    }
    Ok(m)
}

fn meta(path: &str, m: std::fs::Metadata) -> io::Result<Meta> {
    let ft = m.file_type();
    let mut meta = Meta {
        is_dir: ft.is_dir(),
        is_file: ft.is_file(),
        is_symlink: ft.is_symlink(),
        nlink: 1,
        size: m.len(),
        mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        atime: m.accessed().unwrap_or(SystemTime::UNIX_EPOCH),
        mode: 0,
        uid: 0,
        gid: 0,
    };
    platform::fill(path, &m, &mut meta)?;
    Ok(meta)
}

pub use opsd_sdk::fsinfo::{set_mode, set_owner};

/// How a program run ended.
pub struct ProgramExit {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Where a program's standard input and output go.
pub enum Io<'a> {
    /// Captured (output) or empty (input).
    Pipe,
    /// A file path.
    File(&'a str),
}

/// Runs a program from the job's exec grant.
pub fn run_program(
    program: &str,
    args: &[String],
    stdin: Io<'_>,
    stdout: Io<'_>,
) -> Result<ProgramExit, String> {
    platform::run_program(program, args, stdin, stdout)
}

#[cfg(target_arch = "wasm32")]
mod platform {
    use super::{Io, Meta, ProgramExit};
    use opsd_sdk::{Command, ExecError, Input, Output};
    use std::io;

    pub fn fill(path: &str, _m: &std::fs::Metadata, meta: &mut Meta) -> io::Result<()> {
        let c = std::ffi::CString::new(path).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: `st` is plain old data that lstat fills for a valid,
        // NUL-terminated path.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::lstat(c.as_ptr(), &mut st) } == 0 {
            meta.nlink = st.st_nlink;
        }
        if meta.is_file || meta.is_dir {
            let info = opsd_sdk::fsinfo::mode_owner(path).map_err(io::Error::other)?;
            meta.mode = info.mode;
            meta.uid = info.uid;
            meta.gid = info.gid;
        }
        Ok(())
    }

    pub fn run_program(
        program: &str,
        args: &[String],
        stdin: Io<'_>,
        stdout: Io<'_>,
    ) -> Result<ProgramExit, String> {
        let mut cmd = Command::new(program).args(args.iter().cloned());
        if let Io::File(p) = stdin {
            cmd = cmd.stdin(Input::File(p.to_owned()));
        }
        if let Io::File(p) = stdout {
            cmd = cmd.stdout(Output::File(p.to_owned()));
        }
        match cmd.run() {
            Ok(exit) => Ok(ProgramExit {
                code: exit.code,
                stdout: String::from_utf8_lossy(&exit.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&exit.stderr).into_owned(),
            }),
            Err(ExecError::Denied(why)) => Err(why),
            Err(ExecError::Spawn(why)) => Err(format!("cannot start {program}: {why}")),
            Err(ExecError::Timeout(ms)) => Err(format!("{program} was killed after {ms} ms")),
            Err(ExecError::Io(why)) => Err(why),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod platform {
    use super::{Io, Meta, ProgramExit};
    use std::io;
    use std::os::unix::fs::MetadataExt;

    pub fn fill(_path: &str, m: &std::fs::Metadata, meta: &mut Meta) -> io::Result<()> {
        meta.nlink = m.nlink();
        meta.mode = m.mode() & 0o7777;
        meta.uid = m.uid();
        meta.gid = m.gid();
        Ok(())
    }

    pub fn run_program(
        program: &str,
        args: &[String],
        stdin: Io<'_>,
        stdout: Io<'_>,
    ) -> Result<ProgramExit, String> {
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(program);
        cmd.args(args);
        match stdin {
            Io::File(p) => cmd.stdin(std::fs::File::open(p).map_err(|e| format!("{p}: {e}"))?),
            Io::Pipe => cmd.stdin(Stdio::null()),
        };
        if let Io::File(p) = stdout {
            cmd.stdout(std::fs::File::create(p).map_err(|e| format!("{p}: {e}"))?);
        }
        let out = cmd
            .output()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        Ok(ProgramExit {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
