//! Where this process sits in a data-parallel job, read the way the standard launchers
//! publish it: `torchrun --no-python` (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `MASTER_ADDR`, `MASTER_PORT`) or Slurm's `srun` (`SLURM_PROCID`, `SLURM_NTASKS`,
//! `SLURM_LOCALID`, master = first node of `SLURM_JOB_NODELIST`). Explicit
//! `--rank/--world-size/--dist-addr` flags win over both.

use std::fmt;

/// The default rendezvous port, as torchrun's.
pub const DEFAULT_PORT: u16 = 29500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub rank: u64,
    pub world_size: u64,
    /// Index of this process on its node: picks the GPU.
    pub local_rank: u64,
    /// `host:port` where rank 0 listens for the rendezvous.
    pub master: String,
    /// Which convention the values came from (for the log).
    pub source: &'static str,
}

impl fmt::Display for Launch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rank {}/{} (local rank {}), master {} [{}]", self.rank, self.world_size, self.local_rank, self.master, self.source)
    }
}

/// What the command line said (each `None` when not given).
#[derive(Debug, Clone, Default)]
pub struct LaunchFlags {
    pub rank: Option<u64>,
    pub world_size: Option<u64>,
    pub local_rank: Option<u64>,
    pub dist_addr: Option<String>,
}

fn num(get: &dyn Fn(&str) -> Option<String>, key: &str) -> Result<Option<u64>, String> {
    match get(key) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| format!("{key}={v:?} is not a non-negative integer")),
    }
}

/// Resolves the launch from flags and environment (`get` reads a variable; the binary
/// passes `std::env::var`). Precedence per value: flag, torchrun variable, Slurm
/// variable, single-process default.
pub fn resolve(flags: &LaunchFlags, get: &dyn Fn(&str) -> Option<String>) -> Result<Launch, String> {
    let torchrun = get("RANK").is_some() || get("WORLD_SIZE").is_some();
    let slurm = !torchrun && get("SLURM_PROCID").is_some() && get("SLURM_NTASKS").is_some();
    let (env_rank, env_world, env_local, source) = if torchrun {
        (num(get, "RANK")?, num(get, "WORLD_SIZE")?, num(get, "LOCAL_RANK")?, "torchrun")
    } else if slurm {
        (num(get, "SLURM_PROCID")?, num(get, "SLURM_NTASKS")?, num(get, "SLURM_LOCALID")?, "slurm")
    } else {
        (None, None, None, "flags")
    };
    let rank = flags.rank.or(env_rank).unwrap_or(0);
    let world_size = flags.world_size.or(env_world).unwrap_or(1);
    if world_size == 0 || rank >= world_size {
        return Err(format!("rank {rank} must be below the world size {world_size} ({source})"));
    }
    let local_rank = flags.local_rank.or(env_local).unwrap_or(0);
    let port = match num(get, "MASTER_PORT")? {
        Some(p) if p > 0 && p <= u16::MAX as u64 => p as u16,
        Some(p) => return Err(format!("MASTER_PORT={p} is not a TCP port")),
        // Under Slurm two jobs may share a node: derive the port from the job id.
        None if slurm => num(get, "SLURM_JOB_ID")?.map_or(DEFAULT_PORT, |j| 20000 + (j % 20000) as u16),
        None => DEFAULT_PORT,
    };
    // torchrun's agent already serves its own TCPStore on MASTER_PORT (and tells its
    // workers so); m6-train's rendezvous takes the next port.
    let port = if torchrun && get("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.eq_ignore_ascii_case("true")) { port.wrapping_add(1) } else { port };
    let master = if let Some(a) = &flags.dist_addr {
        a.clone()
    } else if let Some(a) = get("MASTER_ADDR").filter(|a| !a.trim().is_empty()) {
        join_host_port(a.trim(), port)
    } else if let Some(a) = get("M6_DIST_ADDR").filter(|a| !a.trim().is_empty()) {
        a.trim().to_string()
    } else if slurm {
        let list = get("SLURM_JOB_NODELIST").or_else(|| get("SLURM_NODELIST")).ok_or("under Slurm, SLURM_JOB_NODELIST is unset (and no MASTER_ADDR)")?;
        join_host_port(&first_node(&list)?, port)
    } else {
        join_host_port("127.0.0.1", port)
    };
    Ok(Launch { rank, world_size, local_rank, master, source })
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}") // a bare IPv6 address
    } else {
        format!("{host}:{port}")
    }
}

/// The first host of a Slurm node list in its compact form: `node[01-04,07],gpu7`
/// gives `node01`, `rack[2-3]-n[5-6]` gives `rack2-n5`, `a,b` gives `a`. Zero padding of
/// a range's start is kept, as Slurm names the hosts.
pub fn first_node(list: &str) -> Result<String, String> {
    let bad = |why: &str| format!("SLURM_JOB_NODELIST {list:?}: {why}");
    // The first entry: up to the first comma outside brackets.
    let mut depth = 0i32;
    let mut end = list.len();
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
        if depth < 0 || depth > 1 {
            return Err(bad("unbalanced brackets"));
        }
    }
    let entry = list[..end].trim();
    if entry.is_empty() {
        return Err(bad("empty"));
    }
    let mut host = String::new();
    let mut rest = entry;
    while let Some(open) = rest.find('[') {
        host.push_str(&rest[..open]);
        let close = rest[open..].find(']').map(|c| open + c).ok_or_else(|| bad("unbalanced brackets"))?;
        let inner = &rest[open + 1..close];
        let first = inner.split(',').next().unwrap_or("").split('-').next().unwrap_or("").trim();
        if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("a bracket range that is not numeric"));
        }
        host.push_str(first);
        rest = &rest[close + 1..];
    }
    host.push_str(rest);
    if host.contains(']') {
        return Err(bad("unbalanced brackets"));
    }
    Ok(host)
}
