//! A graph as one object: a header, then its arrays, little-endian.
//!
//! ```text
//! "SLUHNSW1"  dimensions:u32  metric:u8  top:u8  0:u16  m:u32  entry:u32
//! nodes:u64  upper_len:u64
//! keys:[u64; nodes]  levels:[u8; nodes]  level0:[u32; nodes * (2m + 1)]
//! upper_at:[u32; nodes]  upper:[u32; upper_len]  vectors:[f32; nodes * dimensions]
//! ```
//!
//! Reading checks every link and offset, so a damaged file is an error,
//! never a walk out of bounds.

use datafusion::error::{DataFusionError, Result};

use super::super::definition::IndexMetric;
use super::quantized::Codes;
use super::space::Space;
use super::{Graph, MAX_LEVEL};

const MAGIC: &[u8; 8] = b"SLUHNSW1";

/// No entry node (an empty graph).
const NO_ENTRY: u32 = u32::MAX;

impl Graph {
    /// The graph as bytes ([`Graph::from_bytes`] reads them back).
    pub(in crate::storage::vector_index) fn to_bytes(&self) -> Vec<u8> {
        let nodes = self.keys.len();
        let mut out = Vec::with_capacity(
            48 + nodes * (8 + 1 + 4)
                + 4 * (self.level0.len() + self.upper.len() + self.space.vectors.len()),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.space.dimensions as u32).to_le_bytes());
        out.push(metric_code(self.space.metric));
        let (entry, top) = self.entry.unwrap_or((NO_ENTRY, 0));
        out.push(top);
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(self.m as u32).to_le_bytes());
        out.extend_from_slice(&entry.to_le_bytes());
        out.extend_from_slice(&(nodes as u64).to_le_bytes());
        out.extend_from_slice(&(self.upper.len() as u64).to_le_bytes());
        self.keys
            .iter()
            .for_each(|k| out.extend_from_slice(&k.to_le_bytes()));
        out.extend_from_slice(&self.levels);
        for array in [&self.level0, &self.upper_at, &self.upper] {
            array
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
        self.space
            .vectors
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        out
    }

    /// Reads a graph written by [`Graph::to_bytes`].
    pub(in crate::storage::vector_index) fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(MAGIC.len())? != MAGIC {
            return Err(damaged(
                "not a Sluice HNSW graph (an index built by an older Sluice: \
                 DROP INDEX and CREATE INDEX rebuild it)",
            ));
        }
        let dimensions = reader.u32()? as usize;
        let metric = metric_of(reader.u8()?)?;
        let top = reader.u8()?;
        reader.take(2)?;
        let m = reader.u32()? as usize;
        let entry = reader.u32()?;
        let nodes = usize::try_from(reader.u64()?).map_err(|_| damaged("node count"))?;
        let upper_len = usize::try_from(reader.u64()?).map_err(|_| damaged("upper length"))?;
        if dimensions == 0 || !(2..=1000).contains(&m) || top > MAX_LEVEL {
            return Err(damaged("header"));
        }
        let keys = reader.array(nodes, 8, |b| {
            u64::from_le_bytes(b.try_into().unwrap_or_default())
        })?;
        let levels = reader.take(nodes)?.to_vec();
        let level0_width = 2 * m + 1;
        let level0_len = nodes
            .checked_mul(level0_width)
            .ok_or_else(|| damaged("size"))?;
        let level0 = reader.array(level0_len, 4, read_u32)?;
        let upper_at = reader.array(nodes, 4, read_u32)?;
        let upper = reader.array(upper_len, 4, read_u32)?;
        let vector_len = nodes
            .checked_mul(dimensions)
            .ok_or_else(|| damaged("size"))?;
        let vectors = reader.array(vector_len, 4, |b| {
            f32::from_le_bytes(b.try_into().unwrap_or_default())
        })?;
        if reader.at != bytes.len() {
            return Err(damaged("trailing bytes"));
        }
        if keys.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(damaged("keys out of order"));
        }
        let entry = match entry {
            NO_ENTRY if nodes == 0 => None,
            node if (node as usize) < nodes && levels[node as usize] == top => Some((node, top)),
            _ => return Err(damaged("entry node")),
        };
        check_links(&levels, &level0, &upper_at, &upper, m)?;
        let mut space = Space::new(dimensions, metric);
        space.vectors = vectors;
        space.compute_norms();
        Ok(Graph {
            codes: Codes::encode(&space),
            space,
            keys,
            levels,
            m,
            level0,
            upper_at,
            upper,
            entry,
        })
    }
}

/// Every list within its width and its array, every link to a node that
/// has the list's level.
fn check_links(
    levels: &[u8],
    level0: &[u32],
    upper_at: &[u32],
    upper: &[u32],
    m: usize,
) -> Result<()> {
    let nodes = levels.len();
    let links_ok = |row: &[u32], level: u8| {
        let count = row[0] as usize;
        count < row.len()
            && row[1..=count]
                .iter()
                .all(|&n| (n as usize) < nodes && levels[n as usize] >= level)
    };
    for (node, row) in level0.chunks_exact(2 * m + 1).enumerate() {
        if !links_ok(row, 0) {
            return Err(damaged(&format!("level-0 links of node {node}")));
        }
    }
    let width = m + 1;
    for (node, (&level, &at)) in levels.iter().zip(upper_at).enumerate() {
        if level == 0 {
            continue;
        }
        let end = (at as usize).checked_add(usize::from(level) * width);
        let Some(lists) = end.and_then(|end| upper.get(at as usize..end)) else {
            return Err(damaged(&format!("upper links of node {node}")));
        };
        for (l, row) in (1..=level).zip(lists.chunks_exact(width)) {
            if !links_ok(row, l) {
                return Err(damaged(&format!("level-{l} links of node {node}")));
            }
        }
    }
    Ok(())
}

fn read_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().unwrap_or_default())
}

fn metric_code(metric: IndexMetric) -> u8 {
    match metric {
        IndexMetric::Cosine => 0,
        IndexMetric::L2 => 1,
        IndexMetric::Ip => 2,
    }
}

fn metric_of(code: u8) -> Result<IndexMetric> {
    match code {
        0 => Ok(IndexMetric::Cosine),
        1 => Ok(IndexMetric::L2),
        2 => Ok(IndexMetric::Ip),
        _ => Err(damaged("metric")),
    }
}

fn damaged(what: &str) -> DataFusionError {
    DataFusionError::Execution(format!("vector index graph damaged or unreadable: {what}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| damaged("truncated"))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(read_u32(self.take(4)?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }

    fn array<T>(&mut self, len: usize, width: usize, read: impl Fn(&[u8]) -> T) -> Result<Vec<T>> {
        let bytes = self.take(len.checked_mul(width).ok_or_else(|| damaged("size"))?)?;
        Ok(bytes.chunks_exact(width).map(read).collect())
    }
}
