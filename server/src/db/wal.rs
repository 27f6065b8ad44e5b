//! The write-ahead log that makes acknowledged writes durable: every atomic batch applied to the
//! store is appended as one checksummed record; a group commit writes the pending records and
//! `fdatasync`s once; opening the store replays the log (stopping at a torn or corrupt tail).
//!
//! Record: `[u32 LE payload length][u32 LE crc32 of payload][payload]`; payload: ops, each
//! `[u8 tag: 0 put, 1 delete][u32 LE key length][key]` plus `[u32 LE value length][value]` for puts.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use super::kv::Op;

const PUT: u8 = 0;
const DELETE: u8 = 1;
const HEADER: usize = 8;

/// Appends the record of one batch to `out`.
pub fn encode(ops: &[Op], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    for op in ops {
        match op {
            Op::Put(k, v) => {
                out.push(PUT);
                put_bytes(out, k);
                put_bytes(out, v);
            }
            Op::Delete(k) => {
                out.push(DELETE);
                put_bytes(out, k);
            }
        }
    }
    let payload = &out[start + HEADER..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Every complete, intact batch in `log`, in order. A torn or corrupt record ends the log: it was
/// being written when the process died, so it was never acknowledged.
pub fn decode(log: &[u8]) -> Vec<Vec<Op>> {
    let mut batches = Vec::new();
    let mut rest = log;
    while rest.len() >= HEADER {
        let len = u32_at(rest, 0) as usize;
        let crc = u32_at(rest, 4);
        let Some(payload) = rest.get(HEADER..HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        match decode_ops(payload) {
            Some(ops) => batches.push(ops),
            None => break,
        }
        rest = &rest[HEADER + len..];
    }
    batches
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn decode_ops(mut p: &[u8]) -> Option<Vec<Op>> {
    fn bytes<'a>(p: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32_at(p.get(..4)?, 0) as usize;
        let b = p.get(4..4 + len)?;
        *p = &p[4 + len..];
        Some(b)
    }
    let mut ops = Vec::new();
    while let Some((&tag, rest)) = p.split_first() {
        p = rest;
        let key = bytes(&mut p)?.to_vec();
        ops.push(match tag {
            PUT => Op::Put(key, bytes(&mut p)?.to_vec()),
            DELETE => Op::Delete(key),
            _ => return None,
        });
    }
    Some(ops)
}

/// The log file.
pub struct Wal {
    file: File,
    len: u64,
}

impl Wal {
    /// Opens (or creates) the log and returns it with its current contents.
    pub fn open(path: &Path) -> std::io::Result<(Wal, Vec<u8>)> {
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(path)?;
        let mut contents = Vec::new();
        file.read_to_end(&mut contents)?;
        let len = contents.len() as u64;
        Ok((Wal { file, len }, contents))
    }

    /// Appends records and makes them durable.
    pub fn append_durably(&mut self, records: &[u8]) -> std::io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.file.write_all(records)?;
        self.file.sync_data()?;
        self.len += records.len() as u64;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the log; call only once everything in it is durable in the store itself.
    pub fn truncate(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_data()?;
        self.len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Op> {
        vec![
            Op::Put(b"k1".to_vec(), b"v1".to_vec()),
            Op::Delete(b"k2".to_vec()),
            Op::Put(b"".to_vec(), vec![]),
        ]
    }

    fn same(a: &[Op], b: &[Op]) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn records_round_trip_in_order() {
        let mut log = Vec::new();
        encode(&sample(), &mut log);
        encode(&[Op::Put(b"x".to_vec(), b"y".to_vec())], &mut log);
        let batches = decode(&log);
        assert_eq!(batches.len(), 2);
        assert!(same(&batches[0], &sample()));
        assert!(same(&batches[1], &[Op::Put(b"x".to_vec(), b"y".to_vec())]));
    }

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_log() {
        let mut log = Vec::new();
        encode(&sample(), &mut log);
        let first = log.len();
        encode(&[Op::Put(b"x".to_vec(), b"y".to_vec())], &mut log);
        for cut in first..log.len() {
            assert_eq!(decode(&log[..cut]).len(), 1, "cut at {cut}");
        }
        let mut flipped = log.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert_eq!(decode(&flipped).len(), 1);
        assert_eq!(decode(&[0xff; 3]).len(), 0);
    }

    #[test]
    fn the_file_appends_and_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (mut wal, contents) = Wal::open(&path).unwrap();
        assert!(contents.is_empty());
        let mut rec = Vec::new();
        encode(&sample(), &mut rec);
        wal.append_durably(&rec).unwrap();
        wal.append_durably(&rec).unwrap();
        drop(wal);
        let (mut wal, contents) = Wal::open(&path).unwrap();
        assert_eq!(decode(&contents).len(), 2);
        assert_eq!(wal.len(), contents.len() as u64);
        wal.truncate().unwrap();
        wal.append_durably(&rec).unwrap();
        drop(wal);
        let (_, contents) = Wal::open(&path).unwrap();
        assert_eq!(decode(&contents).len(), 1);
    }
}
