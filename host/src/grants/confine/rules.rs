//! The Landlock ruleset of one exec call, built in the daemon (it opens
//! every path it names) and applied by the child just before `exec`.

use super::{Mode, SYSTEM_BASE, SYSTEM_DEVICES, SYSTEM_RANDOM};
use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// The ABI whose file-system rights are handled: every right up to device
/// ioctls (5). Later ABIs add no file right we rely on.
const FS_ABI: ABI = ABI::V5;

/// What a path in the ruleset allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// Read files and list directories.
    Read,
    /// Read, write, create, rename, remove, truncate (no device nodes).
    ReadWrite,
    /// Run (and read) this file: a granted program or what the kernel
    /// needs to start it.
    Execute,
    /// Read and write an existing device or file, truncating included
    /// (`> /dev/null`), nothing created.
    Device,
}

impl Allow {
    /// The Landlock access bits, for a rule the child adds itself.
    pub fn bits(self) -> u64 {
        self.rights().bits()
    }

    fn rights(self) -> BitFlags<AccessFs> {
        let read = AccessFs::ReadFile | AccessFs::ReadDir;
        match self {
            Allow::Read => read,
            Allow::ReadWrite => {
                AccessFs::from_all(FS_ABI)
                    & !(AccessFs::Execute | AccessFs::MakeChar | AccessFs::MakeBlock)
            }
            Allow::Execute => AccessFs::Execute | AccessFs::ReadFile,
            Allow::Device => {
                AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev
            }
        }
    }
}

/// Everything one call's ruleset says, before it is opened.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    pub paths: Vec<(PathBuf, Allow)>,
    /// The job's fs grants: opened without following any symlink (one put
    /// in since the config loaded refuses the exec).
    pub grants: Vec<(PathBuf, Allow)>,
    /// TCP ports children may connect to; `None` leaves TCP alone
    /// (no network namespace is the barrier then, or a grant of `*`).
    pub tcp_connect: Option<Vec<u16>>,
}

impl Plan {
    /// The base every child reads, plus `extra` read-only paths.
    pub fn with_base(extra: &[PathBuf]) -> Plan {
        let mut paths: Vec<(PathBuf, Allow)> = SYSTEM_BASE
            .iter()
            .map(|p| (PathBuf::from(p), Allow::Read))
            .collect();
        paths.extend(
            SYSTEM_DEVICES
                .iter()
                .map(|p| (PathBuf::from(p), Allow::Device)),
        );
        paths.extend(
            SYSTEM_RANDOM
                .iter()
                .map(|p| (PathBuf::from(p), Allow::Read)),
        );
        paths.extend(extra.iter().map(|p| (p.clone(), Allow::Read)));
        Plan {
            paths,
            grants: Vec::new(),
            tcp_connect: None,
        }
    }
}

/// Opens every path of `plan` and makes the ruleset; `mode` says whether
/// a kernel without every right is an error. Paths that do not exist are
/// skipped (the base names directories some systems lack; grants are
/// created before a run). Returns the ruleset and what was left out.
pub fn build(plan: &Plan, mode: Mode) -> Result<(OwnedFd, Vec<String>), String> {
    let level = match mode {
        Mode::Strict => CompatLevel::HardRequirement,
        Mode::BestEffort => CompatLevel::BestEffort,
    };
    let mut skipped = Vec::new();
    let err = |what: &str, e: landlock::RulesetError| format!("Landlock {what}: {e}");
    let mut ruleset = Ruleset::default()
        .set_compatibility(level)
        .handle_access(AccessFs::from_all(FS_ABI))
        .map_err(|e| err("file rights", e))?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .map_err(|e| err("scopes", e))?;
    if plan.tcp_connect.is_some() {
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(|e| err("TCP rights", e))?;
    }
    let mut created = ruleset.create().map_err(|e| err("ruleset", e))?;
    for (path, allow) in &plan.paths {
        let Some((fd, is_dir)) = open_path(path) else {
            skipped.push(path.display().to_string());
            continue;
        };
        let mut rights = allow.rights();
        if !is_dir {
            rights &= AccessFs::from_file(FS_ABI);
        }
        created = created
            .add_rule(PathBeneath::new(fd, rights))
            .map_err(|e| format!("Landlock rule for {}: {e}", path.display()))?;
    }
    for (path, allow) in &plan.grants {
        let dir = crate::grants::fs::open_grant_dir(path)
            .map_err(|e| format!("fs grant {}: {e}", path.display()))?;
        created = created
            .add_rule(PathBeneath::new(dir, allow.rights()))
            .map_err(|e| format!("Landlock rule for {}: {e}", path.display()))?;
    }
    for port in plan.tcp_connect.iter().flatten() {
        created = created
            .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
            .map_err(|e| format!("Landlock rule for TCP port {port}: {e}"))?;
    }
    let fd: Option<OwnedFd> = created.into();
    fd.map(|fd| (fd, skipped))
        .ok_or_else(|| "this kernel has no Landlock".to_owned())
}

/// An `O_PATH` descriptor of `path`, symlinks followed (a rule applies to
/// what the path names, as `/etc/localtime` names a zone file), and
/// whether it is a directory.
fn open_path(path: &Path) -> Option<(PathFd, bool)> {
    let meta = std::fs::metadata(path).ok()?;
    let fd = PathFd::new(path).ok()?;
    Some((fd, meta.is_dir()))
}

/// The access rights Landlock handles, in words, for `opsd check`.
pub fn describe_allow(allow: Allow) -> &'static str {
    match allow {
        Allow::Read => "read",
        Allow::ReadWrite => "read, write, create, remove",
        Allow::Execute => "run",
        Allow::Device => "read and write",
    }
}

/// Ports of `ranges` as a list, or `None` when they are too many to list
/// (Landlock has a rule per port): the ranges are then left to the
/// supervisor's check of each connect.
pub fn ports(ranges: &[(u16, u16)]) -> Option<Vec<u16>> {
    const MOST: usize = 4096;
    let mut out = Vec::new();
    for (lo, hi) in ranges {
        if usize::from(hi - lo) + out.len() >= MOST {
            return None;
        }
        out.extend(*lo..=*hi);
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists_stay_small() {
        assert_eq!(ports(&[(5432, 5432), (80, 81)]), Some(vec![80, 81, 5432]));
        assert_eq!(ports(&[(1, u16::MAX)]), None);
    }

    #[test]
    fn a_ruleset_builds_from_the_base() {
        if super::super::Support::get().landlock_abi < super::super::LANDLOCK_ABI_REQUIRED {
            eprintln!("SKIPPED: this kernel's Landlock is too old");
            return;
        }
        let mut plan = Plan::with_base(&[]);
        plan.paths.push(("/bin/sh".into(), Allow::Execute));
        plan.tcp_connect = Some(vec![5432]);
        let (_fd, skipped) = build(&plan, Mode::Strict).unwrap();
        assert!(!skipped.iter().any(|s| s == "/usr"), "{skipped:?}");
    }
}
