//! CPU time and memory of other processes on this machine (Linux `/proc`), so a run can
//! report the runner's and PostgreSQL's CPU per cycle and the runner's resident memory.

use std::time::Duration;

/// User plus system CPU of process `pid`, in clock ticks.
fn ticks(pid: u32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces: the fields after it are fixed.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state (field 3) ... utime is field 14, stime field 15.
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(field(14) + field(15))
}

/// The machine's idle CPU so far (idle plus I/O wait, every core), from `/proc/stat`.
pub fn machine_idle() -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().unwrap_or_default();
    // `cpu  user nice system idle iowait ...`
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Ok(Duration::from_secs_f64(
        idle as f64 / ticks_per_second() as f64,
    ))
}

/// The parent of `pid`, from its stat line.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on).
fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU of a process and, with `children`, of its live children too (PostgreSQL: the
/// postmaster and its backends and workers).
#[derive(Debug, Clone, Copy)]
pub struct Watched {
    pid: u32,
    children: bool,
}

impl Watched {
    /// Watches `pid`, and its children when `children` is set.
    pub fn new(pid: u32, children: bool) -> Self {
        Self { pid, children }
    }

    /// The process watched.
    pub fn pid(self) -> u32 {
        self.pid
    }

    /// CPU used so far by what is watched.
    pub fn used(self) -> std::io::Result<Duration> {
        let mut total = ticks(self.pid)?;
        if self.children {
            for entry in std::fs::read_dir("/proc")?.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                if parent(pid) == Some(self.pid) {
                    total += ticks(pid).unwrap_or(0);
                }
            }
        }
        Ok(Duration::from_secs_f64(
            total as f64 / ticks_per_second() as f64,
        ))
    }
}

/// Resident memory of a process: now (`VmRSS`) and its peak so far (`VmHWM`), in bytes.
pub fn resident(pid: u32) -> std::io::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}
