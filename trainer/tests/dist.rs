//! The collective and launch layers on their own (no model): the TCP ring for 2, 3
//! and 5 ranks, the torchrun / Slurm environment conventions, and the run-time NCCL
//! binding (loaded from torch's wheels; joining a communicator needs a GPU).

use std::collections::HashMap;
use std::time::Duration;

use m6_trainer::dist::Ring;
use m6_trainer::launch::{first_node, resolve, LaunchFlags};
use m6_trainer::nccl::Nccl;

fn ring_run<R: Send + 'static>(world: u64, port: u16, f: impl Fn(Ring, u64) -> R + Send + Sync + Copy + 'static) -> Vec<R> {
    let handles: Vec<_> = (0..world)
        .map(|r| {
            std::thread::spawn(move || {
                let blob = if r == 0 { b"id-from-rank-0".to_vec() } else { vec![] };
                let (ring, got) = Ring::connect(&format!("127.0.0.1:{port}"), r, world, &blob, Duration::from_secs(20)).unwrap();
                assert_eq!(got, b"id-from-rank-0");
                f(ring, r)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn ring_all_reduce_sums_for_2_3_and_5_ranks_any_length() {
    for (world, port) in [(2u64, 29741u16), (3, 29742), (5, 29743)] {
        let out = ring_run(world, port, |mut ring, r| {
            let mut res = vec![];
            // Lengths below, at and above the world size (chunks of 0 elements too).
            for n in [1usize, 2, 3, 7, 1000] {
                let mut buf: Vec<f32> = (0..n).map(|i| (r as f32 + 1.0) * i as f32).collect();
                ring.all_reduce_sum(&mut buf).unwrap();
                res.push(buf);
            }
            ring.agree("step", 7).unwrap();
            let mut ints = vec![1u64 << 40, r];
            ring.all_reduce_sum(&mut ints).unwrap();
            res.push(ints.iter().map(|&x| x as f32).collect());
            res
        });
        let tri = (world * (world + 1) / 2) as f32;
        for per_rank in &out {
            for (k, n) in [1usize, 2, 3, 7, 1000].iter().enumerate() {
                let want: Vec<f32> = (0..*n).map(|i| tri * i as f32).collect();
                assert_eq!(per_rank[k], want, "world {world} n {n}");
            }
            assert_eq!(per_rank[5], vec![(world << 40) as f32, (world * (world - 1) / 2) as f32]);
        }
    }
}

#[test]
fn disagreement_is_reported_on_every_rank() {
    let out = ring_run(3, 29744, |mut ring, r| ring.agree("the weights", if r == 2 { 9 } else { 1 }).map_err(|e| e.to_string()));
    for o in out {
        let e = o.unwrap_err();
        assert!(e.contains("the weights") && e.contains("ranks [2]"), "{e}");
    }
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| m.get(k).cloned()
}

#[test]
fn slurm_node_lists_give_their_first_host() {
    assert_eq!(first_node("node[01-04]").unwrap(), "node01");
    assert_eq!(first_node("node[07,01-04],gpu1").unwrap(), "node07");
    assert_eq!(first_node("gpu-a100-3,gpu-a100-4").unwrap(), "gpu-a100-3");
    assert_eq!(first_node("rack[2-3]-n[005-006]").unwrap(), "rack2-n005");
    assert_eq!(first_node("single").unwrap(), "single");
    assert!(first_node("node[01-04").is_err());
    assert!(first_node("node[a-b]").is_err());
    assert!(first_node("").is_err());
}

#[test]
fn torchrun_then_slurm_then_flags() {
    let t = env(&[("RANK", "2"), ("WORLD_SIZE", "4"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "10.0.0.5"), ("MASTER_PORT", "29600")]);
    let l = resolve(&LaunchFlags::default(), &t).unwrap();
    assert_eq!((l.rank, l.world_size, l.local_rank, l.master.as_str(), l.source), (2, 4, 1, "10.0.0.5:29600", "torchrun"));
    // Under torchrun's agent, which serves its own TCPStore on MASTER_PORT.
    let agent = env(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29600"), ("TORCHELASTIC_USE_AGENT_STORE", "True")]);
    assert_eq!(resolve(&LaunchFlags::default(), &agent).unwrap().master, "127.0.0.1:29601");

    let s = env(&[("SLURM_PROCID", "5"), ("SLURM_NTASKS", "8"), ("SLURM_LOCALID", "1"), ("SLURM_JOB_NODELIST", "gpu[12-13]"), ("SLURM_JOB_ID", "123456")]);
    let l = resolve(&LaunchFlags::default(), &s).unwrap();
    assert_eq!((l.rank, l.world_size, l.local_rank, l.master.as_str(), l.source), (5, 8, 1, "gpu12:23456", "slurm"));
    // MASTER_ADDR/PORT set in the batch script win over the node list.
    let s2 = env(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_JOB_NODELIST", "gpu[12-13]"), ("MASTER_ADDR", "ib-gpu12"), ("MASTER_PORT", "4000")]);
    assert_eq!(resolve(&LaunchFlags::default(), &s2).unwrap().master, "ib-gpu12:4000");

    // Flags win; nothing set is one process.
    let f = LaunchFlags { rank: Some(1), world_size: Some(2), local_rank: None, dist_addr: Some("127.0.0.1:1234".into()) };
    let l = resolve(&f, &t).unwrap();
    assert_eq!((l.rank, l.world_size, l.master.as_str()), (1, 2, "127.0.0.1:1234"));
    let l = resolve(&LaunchFlags::default(), &env(&[])).unwrap();
    assert_eq!((l.rank, l.world_size, l.local_rank, l.master.as_str()), (0, 1, 0, "127.0.0.1:29500"));

    assert!(resolve(&LaunchFlags::default(), &env(&[("RANK", "4"), ("WORLD_SIZE", "4")])).is_err());
    assert!(resolve(&LaunchFlags::default(), &env(&[("RANK", "x"), ("WORLD_SIZE", "4")])).is_err());
}

/// The binding itself, on any machine with torch's wheels (`make torch` installs
/// nvidia-nccl-cu13 beside torch): the libraries load, every symbol resolves, and
/// rank 0's half of the rendezvous (ncclGetUniqueId needs no GPU) works.
#[test]
fn nccl_loads_and_makes_a_unique_id() {
    let id = Nccl::unique_id().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(id.len(), 128);
    assert!(id.iter().any(|&b| b != 0));
    assert_ne!(Nccl::unique_id().unwrap(), id, "a fresh id each time");
    assert!(Nccl::init(&id[..10], 0, 1, 0).is_err(), "a truncated id is refused");
    if !tch::Cuda::is_available() {
        // Without a GPU, joining fails with an error, not a crash.
        let e = Nccl::init(&id, 0, 1, 0).err().expect("no GPU here").to_string();
        assert!(e.contains("cudaSetDevice") || e.contains("ncclCommInitRank"), "{e}");
    }
}
