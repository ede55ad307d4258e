//! Data-parallel gradient averaging between `--world-size` trainer processes over TCP
//! (libtorch's C API as bound by tch has no collective ops). Rank 0 gathers every
//! rank's flattened gradients, sums them in rank order — so the result is the same
//! whatever order messages arrive in — and sends the mean back to all.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

pub struct Dist {
    rank: u64,
    world: u64,
    /// On rank 0: connections to ranks 1..world, in rank order.
    peers: Vec<TcpStream>,
    /// On other ranks: the connection to rank 0.
    up: Option<TcpStream>,
}

fn write_u64(s: &mut TcpStream, v: u64) -> io::Result<()> {
    s.write_all(&v.to_le_bytes())
}

fn read_u64(s: &mut TcpStream) -> io::Result<u64> {
    let mut b = [0u8; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn write_f32s(s: &mut TcpStream, v: &[f32]) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(8 + v.len() * 4);
    bytes.extend_from_slice(&(v.len() as u64).to_le_bytes());
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    s.write_all(&bytes)
}

fn read_f32s(s: &mut TcpStream, out: &mut [f32]) -> io::Result<()> {
    let n = read_u64(s)? as usize;
    if n != out.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("peer sent {n} gradient values, this rank has {} (different model?)", out.len())));
    }
    let mut bytes = vec![0u8; n * 4];
    s.read_exact(&mut bytes)?;
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes(c.try_into().unwrap());
    }
    Ok(())
}

impl Dist {
    /// A single process: every collective is the identity.
    pub fn single() -> Self {
        Dist { rank: 0, world: 1, peers: vec![], up: None }
    }

    /// Rank 0 listens on `addr` and waits for the others; the others connect to it
    /// (retrying until `timeout`, since ranks start in any order).
    pub fn connect(addr: &str, rank: u64, world: u64, timeout: Duration) -> io::Result<Self> {
        if world <= 1 {
            return Ok(Self::single());
        }
        let ctx = |e: io::Error, what: &str| io::Error::new(e.kind(), format!("rank {rank}/{world}: {what} {addr}: {e}"));
        if rank == 0 {
            let l = TcpListener::bind(addr).map_err(|e| ctx(e, "cannot listen on"))?;
            l.set_nonblocking(true)?;
            let mut slots: Vec<Option<TcpStream>> = (1..world).map(|_| None).collect();
            let start = Instant::now();
            while slots.iter().any(|s| s.is_none()) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false)?;
                        s.set_nodelay(true)?;
                        let r = read_u64(&mut s)?;
                        if r == 0 || r >= world || slots[(r - 1) as usize].is_some() {
                            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a peer claims rank {r} (world size {world}; duplicate or out of range)")));
                        }
                        slots[(r - 1) as usize] = Some(s);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if start.elapsed() > timeout {
                            let missing: Vec<u64> = slots.iter().enumerate().filter(|(_, s)| s.is_none()).map(|(i, _)| i as u64 + 1).collect();
                            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("rank 0 on {addr}: ranks {missing:?} never connected")));
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(ctx(e, "accept on")),
                }
            }
            Ok(Dist { rank, world, peers: slots.into_iter().map(Option::unwrap).collect(), up: None })
        } else {
            let start = Instant::now();
            let mut s = loop {
                match TcpStream::connect(addr) {
                    Ok(s) => break s,
                    Err(e) if start.elapsed() > timeout => return Err(ctx(e, "cannot reach rank 0 at")),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            };
            s.set_nodelay(true)?;
            write_u64(&mut s, rank)?;
            Ok(Dist { rank, world, peers: vec![], up: Some(s) })
        }
    }

    pub fn world(&self) -> u64 {
        self.world
    }

    /// Replaces `buf` on every rank by the element-wise mean over ranks.
    pub fn all_reduce_mean(&mut self, buf: &mut [f32]) -> io::Result<()> {
        if self.world <= 1 {
            return Ok(());
        }
        if self.rank == 0 {
            let mut sum: Vec<f64> = buf.iter().map(|&x| x as f64).collect();
            let mut tmp = vec![0f32; buf.len()];
            for p in &mut self.peers {
                read_f32s(p, &mut tmp)?;
                for (s, t) in sum.iter_mut().zip(&tmp) {
                    *s += *t as f64;
                }
            }
            for (b, s) in buf.iter_mut().zip(&sum) {
                *b = (*s / self.world as f64) as f32;
            }
            for p in &mut self.peers {
                write_f32s(p, buf)?;
            }
        } else {
            let up = self.up.as_mut().unwrap();
            write_f32s(up, buf)?;
            read_f32s(up, buf)?;
        }
        Ok(())
    }

    /// Checks that every rank holds the same `value` (a step, a config fingerprint).
    pub fn agree(&mut self, what: &str, value: u64) -> io::Result<()> {
        if self.world <= 1 {
            return Ok(());
        }
        let bad = |vals: &[u64]| io::Error::new(io::ErrorKind::InvalidData, format!("ranks disagree on {what}: {vals:?}"));
        if self.rank == 0 {
            let mut vals = vec![value];
            for p in &mut self.peers {
                vals.push(read_u64(p)?);
            }
            let ok = vals.iter().all(|&v| v == value);
            for p in &mut self.peers {
                write_u64(p, ok as u64)?;
            }
            if !ok {
                return Err(bad(&vals));
            }
        } else {
            let up = self.up.as_mut().unwrap();
            write_u64(up, value)?;
            if read_u64(up)? != 1 {
                return Err(bad(&[value]));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_ranks_average_their_buffers() {
        let addr = "127.0.0.1:29731";
        let handles: Vec<_> = (0..3u64)
            .map(|r| {
                std::thread::spawn(move || {
                    let mut d = Dist::connect(addr, r, 3, Duration::from_secs(20)).unwrap();
                    d.agree("step", 7).unwrap();
                    let mut buf = vec![r as f32, 10.0 * r as f32, 1.0];
                    d.all_reduce_mean(&mut buf).unwrap();
                    buf
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), vec![1.0, 10.0, 1.0]);
        }
    }
}
