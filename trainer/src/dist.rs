//! Collectives between the trainer's data-parallel processes over TCP: a rendezvous at
//! `MASTER_ADDR:MASTER_PORT` (rank 0 collects every rank's ring address and hands out
//! the table, plus an opaque blob such as the NCCL unique id) and then a ring.
//!
//! On CUDA the gradients go through NCCL ([`crate::nccl`]); this ring carries them only
//! for CPU processes (tests, small runs) and otherwise carries the few small control
//! values of a step (target counts, loader positions at checkpoints, checks), as
//! torch's TCPStore does beside NCCL. The gradient all-reduce is a ring
//! reduce-scatter then all-gather: each rank sends and receives 2·(W−1)/W of the
//! buffer whatever the world size, and no rank is a hub.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

const MAGIC: u64 = 0x4d36_5249_4e47_0001; // "M6RING", protocol 1

pub struct Ring {
    rank: u64,
    world: u64,
    /// To rank + 1 (we only write) and from rank − 1 (we only read).
    next: Option<TcpStream>,
    prev: Option<TcpStream>,
}

fn write_u64(s: &mut impl Write, v: u64) -> io::Result<()> {
    s.write_all(&v.to_le_bytes())
}

fn read_u64(s: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn write_blob(s: &mut impl Write, b: &[u8]) -> io::Result<()> {
    write_u64(s, b.len() as u64)?;
    s.write_all(b)
}

fn read_blob(s: &mut impl Read) -> io::Result<Vec<u8>> {
    let n = read_u64(s)?;
    if n > 1 << 20 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("rendezvous message of {n} bytes: not an m6-train peer")));
    }
    let mut b = vec![0u8; n as usize];
    s.read_exact(&mut b)?;
    Ok(b)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Elements the ring reduces: fixed-size little-endian values that add.
pub trait Elem: Copy + Default + Send + Sync {
    const SIZE: usize;
    fn put(self, out: &mut Vec<u8>);
    fn get(b: &[u8]) -> Self;
    fn add(self, o: Self) -> Self;
}

impl Elem for f32 {
    const SIZE: usize = 4;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
    fn get(b: &[u8]) -> Self {
        f32::from_le_bytes(b.try_into().unwrap())
    }
    fn add(self, o: Self) -> Self {
        self + o
    }
}

impl Elem for u64 {
    const SIZE: usize = 8;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
    fn get(b: &[u8]) -> Self {
        u64::from_le_bytes(b.try_into().unwrap())
    }
    fn add(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
}

fn connect_retry(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let start = Instant::now();
    loop {
        let res = addr.to_socket_addrs().and_then(|mut a| a.next().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")));
        match res.and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5))) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) if start.elapsed() > timeout => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn accept_timeout(l: &TcpListener, timeout: Duration, what: &str) -> io::Result<(TcpStream, SocketAddr)> {
    l.set_nonblocking(true)?;
    let start = Instant::now();
    loop {
        match l.accept() {
            Ok((s, a)) => {
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                return Ok((s, a));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if start.elapsed() > timeout {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, format!("{what}: nobody connected within {timeout:?}")));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

impl Ring {
    /// One process: every collective is the identity.
    pub fn single() -> Self {
        Ring { rank: 0, world: 1, next: None, prev: None }
    }

    /// Rendezvous at `master` (`host:port`, rank 0 listens there) and build the ring.
    /// Rank 0's `blob` reaches every rank (the return value; empty on world size 1
    /// unless rank 0 gave one). Ranks may start in any order within `timeout`.
    pub fn connect(master: &str, rank: u64, world: u64, blob: &[u8], timeout: Duration) -> io::Result<(Self, Vec<u8>)> {
        if world <= 1 {
            return Ok((Self::single(), blob.to_vec()));
        }
        let ctx = |e: io::Error, what: String| io::Error::new(e.kind(), format!("rank {rank}/{world}: {what}: {e}"));
        // Every rank's ring listener, on all interfaces at a free port.
        let ring_l = TcpListener::bind("0.0.0.0:0").map_err(|e| ctx(e, "cannot open a ring port".into()))?;
        let ring_port = ring_l.local_addr()?.port();
        let master_port: u16 = master.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).ok_or_else(|| invalid(format!("master address {master:?} is not host:port")))?;
        let (table, blob) = if rank == 0 {
            let l = TcpListener::bind(("0.0.0.0", master_port)).map_err(|e| ctx(e, format!("cannot listen on port {master_port} for the rendezvous")))?;
            let mut peers: Vec<Option<(TcpStream, String)>> = (1..world).map(|_| None).collect();
            let start = Instant::now();
            while peers.iter().any(Option::is_none) {
                let left = timeout.saturating_sub(start.elapsed());
                let (mut s, addr) = accept_timeout(&l, left, "rendezvous").map_err(|e| {
                    let missing: Vec<u64> = peers.iter().enumerate().filter(|(_, p)| p.is_none()).map(|(i, _)| i as u64 + 1).collect();
                    ctx(e, format!("ranks {missing:?} never reached {master}"))
                })?;
                if read_u64(&mut s)? != MAGIC {
                    continue; // not one of ours (a port scanner, a stale job)
                }
                let (r, w, port) = (read_u64(&mut s)?, read_u64(&mut s)?, read_u64(&mut s)?);
                if w != world {
                    return Err(invalid(format!("rank {r} was started with world size {w}, rank 0 with {world}")));
                }
                if r == 0 || r >= world || peers[(r - 1) as usize].is_some() {
                    return Err(invalid(format!("a peer claims rank {r} (world size {world}; duplicate or out of range)")));
                }
                peers[(r - 1) as usize] = Some((s, SocketAddr::new(addr.ip(), port as u16).to_string()));
            }
            // Rank 0's own ring address: the master host the others already reach.
            let host = &master[..master.len() - master_port.to_string().len() - 1];
            let mut table = vec![format!("{host}:{ring_port}")];
            table.extend(peers.iter().map(|p| p.as_ref().unwrap().1.clone()));
            for (s, _) in peers.iter_mut().map(|p| p.as_mut().unwrap()) {
                write_blob(s, blob)?;
                for a in &table {
                    write_blob(s, a.as_bytes())?;
                }
            }
            (table, blob.to_vec())
        } else {
            let mut s = connect_retry(master, timeout).map_err(|e| ctx(e, format!("cannot reach rank 0 at {master}")))?;
            for v in [MAGIC, rank, world, ring_port as u64] {
                write_u64(&mut s, v)?;
            }
            let blob = read_blob(&mut s).map_err(|e| ctx(e, "rendezvous with rank 0 broke off".into()))?;
            let mut table = vec![];
            for _ in 0..world {
                table.push(String::from_utf8(read_blob(&mut s)?).map_err(|_| invalid("bad ring address".into()))?);
            }
            (table, blob)
        };
        let to = &table[((rank + 1) % world) as usize];
        let mut next = connect_retry(to, timeout).map_err(|e| ctx(e, format!("cannot reach rank {} at {to}", (rank + 1) % world)))?;
        write_u64(&mut next, rank)?;
        let (mut prev, _) = accept_timeout(&ring_l, timeout, "ring").map_err(|e| ctx(e, "waiting for the previous rank".into()))?;
        let from = read_u64(&mut prev)?;
        if from != (rank + world - 1) % world {
            return Err(invalid(format!("rank {rank}: ring connection from rank {from}, expected {}", (rank + world - 1) % world)));
        }
        Ok((Ring { rank, world, next: Some(next), prev: Some(prev) }, blob))
    }

    pub fn rank(&self) -> u64 {
        self.rank
    }

    pub fn world(&self) -> u64 {
        self.world
    }

    /// Sends `out` to the next rank while receiving `n` elements from the previous one
    /// (concurrently: with both directions blocking, a ring of big messages would
    /// deadlock once the socket buffers fill).
    fn exchange<T: Elem>(&mut self, out: &[T], n: usize) -> io::Result<Vec<u8>> {
        let next = self.next.as_mut().expect("ring");
        let prev = self.prev.as_mut().expect("ring");
        let mut bytes = Vec::with_capacity(out.len() * T::SIZE);
        for &x in out {
            x.put(&mut bytes);
        }
        let mut inbuf = vec![0u8; n * T::SIZE];
        std::thread::scope(|sc| {
            let sender = sc.spawn(move || next.write_all(&bytes));
            let r = prev.read_exact(&mut inbuf);
            let w = sender.join().unwrap_or_else(|_| Err(io::Error::other("ring sender panicked")));
            r.and(w)
        })?;
        Ok(inbuf)
    }

    /// Replaces `buf` on every rank by the element-wise sum over ranks (ring
    /// reduce-scatter + all-gather). Every rank must pass the same length. The order
    /// in which the ranks' values are added is fixed by the ring, so the result is the
    /// same from run to run.
    pub fn all_reduce_sum<T: Elem>(&mut self, buf: &mut [T]) -> io::Result<()> {
        let w = self.world as usize;
        if w <= 1 || buf.is_empty() {
            return Ok(());
        }
        let r = self.rank as usize;
        let n = buf.len();
        let bounds = |c: usize| (c * n / w, (c + 1) * n / w);
        // Reduce-scatter: after step s, chunk (r − s − 1) holds the sum of s + 2 ranks.
        for s in 0..w - 1 {
            let (a, b) = bounds((r + w - s) % w);
            let (c, d) = bounds((r + 2 * w - s - 1) % w);
            let got = self.exchange(&buf[a..b], d - c)?;
            for (x, chunk) in buf[c..d].iter_mut().zip(got.chunks_exact(T::SIZE)) {
                *x = x.add(T::get(chunk));
            }
        }
        // All-gather: rank r now owns the total of chunk (r + 1); pass totals around.
        for s in 0..w - 1 {
            let (a, b) = bounds((r + 1 + w - s) % w);
            let (c, d) = bounds((r + w - s) % w);
            let got = self.exchange(&buf[a..b], d - c)?;
            for (x, chunk) in buf[c..d].iter_mut().zip(got.chunks_exact(T::SIZE)) {
                *x = T::get(chunk);
            }
        }
        Ok(())
    }

    /// Every rank's `value`, in rank order, on every rank.
    pub fn all_gather_u64(&mut self, value: u64) -> io::Result<Vec<u64>> {
        let mut v = vec![0u64; self.world as usize];
        v[self.rank as usize] = value;
        self.all_reduce_sum(&mut v)?;
        Ok(v)
    }

    /// Checks that every rank holds the same `value` (a step, a config fingerprint, a
    /// weight checksum); every rank fails alike, naming the ranks that differ.
    pub fn agree(&mut self, what: &str, value: u64) -> io::Result<()> {
        let all = self.all_gather_u64(value)?;
        if all.iter().any(|&v| v != all[0]) {
            let odd: Vec<usize> = (0..all.len()).filter(|&i| all[i] != all[0]).collect();
            return Err(invalid(format!("ranks disagree on {what}: ranks {odd:?} differ from rank 0 (values {all:?})")));
        }
        Ok(())
    }
}
