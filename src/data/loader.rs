//! Shuffled, prefetching batch reader over one split of a [`Store`] (the role of
//! PyTorch's `DataLoader(shuffle=True, drop_last=False)` in the PSTL/AimCLR training
//! loops, method file section 4: "shuffled batches, the last partial batch kept").
//!
//! Epoch `e` visits a permutation drawn from `PstlRng::seed_from_u64(mix(seed, e))`, so
//! the order depends only on `(seed, e)`. When the split's `x` fits in
//! `memory_budget_bytes` it is read once and batches are gathered from memory with
//! rayon; otherwise each batch is read from the store. With `prefetch > 0` a background
//! thread builds up to `prefetch` batches ahead through a bounded channel.

use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::rng::PstlRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use super::error::{DataError, Result};
use super::store::Store;

/// How a [`BatchLoader`] cuts and orders batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderOptions {
    pub batch_size: usize,
    /// Visit samples in a per-epoch permutation (else in file order).
    pub shuffle: bool,
    pub seed: u64,
    /// Drop the last batch when it is smaller than `batch_size` (PSTL keeps it).
    pub drop_last: bool,
    /// Batches built ahead by a background thread; 0 builds them on `next()`.
    pub prefetch: usize,
    /// Read the split's `x` into memory when it takes at most this many bytes.
    pub memory_budget_bytes: usize,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        Self {
            batch_size: 128,
            shuffle: true,
            seed: 1,
            drop_last: false,
            prefetch: 2,
            memory_budget_bytes: 4 << 30,
        }
    }
}

/// One batch: `x` is `(N, C, T, V, M)` = `shape`, `y` the labels and `indices` the
/// samples' positions in the split.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub x: Vec<f32>,
    pub shape: [usize; 5],
    pub y: Vec<i64>,
    pub indices: Vec<usize>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// Where samples come from.
#[derive(Debug)]
enum Source {
    Memory { x: Vec<f32>, y: Vec<i64> },
    Disk { store: Store, split: String },
}

#[derive(Debug)]
struct Shared {
    source: Source,
    sample_shape: [usize; 4],
    len: usize,
}

impl Shared {
    fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    fn batch(&self, indices: Vec<usize>) -> Result<Batch> {
        let sample_len = self.sample_len();
        let (x, y) = match &self.source {
            Source::Memory { x, y } => {
                let mut out = vec![0.0f32; indices.len() * sample_len];
                out.par_chunks_mut(sample_len)
                    .zip(indices.par_iter())
                    .for_each(|(dst, &i)| {
                        dst.copy_from_slice(&x[i * sample_len..(i + 1) * sample_len]);
                    });
                (out, indices.iter().map(|&i| y[i]).collect())
            }
            Source::Disk { store, split } => store.read_xy_indices(split, &indices)?,
        };
        let [c, t, v, m] = self.sample_shape;
        Ok(Batch {
            x,
            shape: [indices.len(), c, t, v, m],
            y,
            indices,
        })
    }
}

/// Batches over one split of a store. `Send + Sync`; epochs may be iterated from any
/// thread.
#[derive(Debug, Clone)]
pub struct BatchLoader {
    shared: Arc<Shared>,
    opts: LoaderOptions,
}

impl BatchLoader {
    /// A loader over `split` of `store` (the store handle is cloned, not reopened).
    pub fn new(store: &Store, split: &str, opts: LoaderOptions) -> Result<Self> {
        if opts.batch_size == 0 {
            return Err(DataError::Invalid("batch_size must be positive".into()));
        }
        let len = store.len(split)?;
        let meta = store.meta();
        let sample_shape = meta.sample_shape();
        let bytes = len
            .saturating_mul(meta.sample_len())
            .saturating_mul(std::mem::size_of::<f32>());
        let source = if bytes <= opts.memory_budget_bytes {
            let data = store.read_split(split)?;
            Source::Memory {
                x: data.x,
                y: data.y,
            }
        } else {
            Source::Disk {
                store: store.clone(),
                split: split.to_owned(),
            }
        };
        Ok(Self {
            shared: Arc::new(Shared {
                source,
                sample_shape,
                len,
            }),
            opts,
        })
    }

    /// Samples in the split.
    pub fn len(&self) -> usize {
        self.shared.len
    }

    pub fn is_empty(&self) -> bool {
        self.shared.len == 0
    }

    /// Whether the split was read into memory.
    pub fn in_memory(&self) -> bool {
        matches!(self.shared.source, Source::Memory { .. })
    }

    pub fn options(&self) -> &LoaderOptions {
        &self.opts
    }

    /// `(C, T, V, M)` of a sample.
    pub fn sample_shape(&self) -> [usize; 4] {
        self.shared.sample_shape
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.shared.len, self.opts.batch_size);
        if self.opts.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The visiting order of epoch `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.shared.len).collect();
        if self.opts.shuffle {
            let mut rng = PstlRng::seed_from_u64(mix(self.opts.seed, epoch));
            order.shuffle(&mut rng);
        }
        order
    }

    /// The batches of epoch `epoch`, in order.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        let mut order = self.order(epoch);
        if self.opts.drop_last {
            order.truncate(self.num_batches() * self.opts.batch_size);
        }
        let chunks: Vec<Vec<usize>> = order
            .chunks(self.opts.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        if self.opts.prefetch == 0 {
            return EpochIter {
                inner: Inner::Inline {
                    shared: Arc::clone(&self.shared),
                    chunks: chunks.into_iter(),
                },
            };
        }
        let (tx, rx) = mpsc::sync_channel(self.opts.prefetch);
        let shared = Arc::clone(&self.shared);
        let worker = std::thread::Builder::new()
            .name("pstl-batch-prefetch".into())
            .spawn(move || {
                for chunk in chunks {
                    let batch = shared.batch(chunk);
                    let failed = batch.is_err();
                    // A closed channel means the consumer dropped the iterator.
                    if tx.send(batch).is_err() || failed {
                        break;
                    }
                }
            });
        match worker {
            Ok(handle) => EpochIter {
                inner: Inner::Prefetch {
                    rx,
                    worker: Some(handle),
                },
            },
            Err(e) => EpochIter {
                inner: Inner::Failed(Some(DataError::Invalid(format!(
                    "cannot start the prefetch thread: {e}"
                )))),
            },
        }
    }
}

/// Seed of epoch `epoch`: splitmix64 of the epoch xor-ed into the seed, so nearby
/// epochs get unrelated streams.
fn mix(seed: u64, epoch: u64) -> u64 {
    let mut z = epoch.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    seed ^ z ^ (z >> 31)
}

/// Iterator over the batches of one epoch. Dropping it early stops the prefetch thread.
#[derive(Debug)]
pub struct EpochIter {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Inline {
        shared: Arc<Shared>,
        chunks: std::vec::IntoIter<Vec<usize>>,
    },
    Prefetch {
        rx: Receiver<Result<Batch>>,
        worker: Option<JoinHandle<()>>,
    },
    Failed(Option<DataError>),
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Inline { shared, chunks } => chunks.next().map(|c| shared.batch(c)),
            Inner::Prefetch { rx, worker } => match rx.recv() {
                Ok(batch) => Some(batch),
                // The worker finished (or stopped after sending an error) ...
                Err(_) => match worker.take().map(JoinHandle::join) {
                    // ... or died: report it instead of ending the epoch early.
                    Some(Err(_)) => Some(Err(DataError::Invalid(
                        "the batch prefetch thread panicked".into(),
                    ))),
                    _ => None,
                },
            },
            Inner::Failed(e) => e.take().map(Err),
        }
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        if let Inner::Prefetch { rx, worker } = &mut self.inner {
            // Closing the channel makes a worker blocked on `send` fail and return.
            let (_, dead) = mpsc::sync_channel(0);
            drop(std::mem::replace(rx, dead));
            if let Some(handle) = worker.take() {
                let _ = handle.join();
            }
        }
    }
}
