//! Materialisation (`AllocateMemoryWithReuse`): one [`Arena`] buffer for a [`Plan`],
//! and a per-step view that hands out each live tensor's bytes.
//!
//! [`Arena::step`] borrows the arena mutably and splits its buffer with
//! `split_at_mut` over the buffers live at that step, sorted by offset, so the
//! slices it hands out are disjoint by construction: safe code cannot hold two
//! aliasing slices of tensors that are live together. Tensors that share a buffer
//! on purpose (in-place outputs, `If` branch outputs) are looked up by name and get
//! the same bytes, one borrow at a time. This module has no `unsafe`: the aligned
//! buffer is a zeroed `Vec<u8>` over-allocated by `align - 1` bytes and used from its
//! first aligned byte on, or, with the `pool` feature, a block of a
//! `memwarden_pool::MemoryPool`.

use crate::error::LifetimeError;
use crate::plan::Plan;

/// Where the arena's bytes live.
enum Storage {
    /// A zeroed vector; the arena starts `start` bytes in, at an aligned address.
    Heap { bytes: Vec<u8>, start: usize },
    /// A block of a memory pool (returned to the pool's cache on drop).
    #[cfg(feature = "pool")]
    Pool(memwarden_pool::Block),
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Heap { bytes, start } => f
                .debug_struct("Heap")
                .field("len", &bytes.len())
                .field("start", start)
                .finish(),
            #[cfg(feature = "pool")]
            Storage::Pool(block) => f.debug_tuple("Pool").field(block).finish(),
        }
    }
}

/// One buffer of the plan: an offset range shared by one or more tensors.
#[derive(Clone, Debug)]
struct Buffer {
    offset: usize,
    bytes: usize,
    /// Tensors in it: `(name, bytes, first step, last step)`.
    members: Vec<(String, usize, usize, usize)>,
}

impl Buffer {
    fn live_at(&self, step: usize) -> bool {
        self.members.iter().any(|m| m.2 <= step && step <= m.3)
    }

    /// `(name, bytes)` of the members live at `step`.
    fn live_names(&self, step: usize) -> Vec<(&str, usize)> {
        self.members
            .iter()
            .filter(|m| m.2 <= step && step <= m.3)
            .map(|m| (m.0.as_str(), m.1))
            .collect()
    }
}

/// The memory for a [`Plan`]: one aligned buffer of `arena_bytes`.
///
/// ```
/// use memwarden_lifetime::ir::{Graph, Node, Tensor};
/// use memwarden_lifetime::{Arena, PlanOptions, plan};
///
/// let mut g = Graph::new("chain");
/// let x = g.add_tensor(Tensor::with_bytes("x", 256));
/// let y = g.add_tensor(Tensor::with_bytes("y", 256));
/// g.add_node(Node::new("relu", "Relu", &[x], &[y]));
/// g.inputs = vec![x];
/// g.outputs = vec![y];
/// let plan = plan(&g, &PlanOptions::default())?;
///
/// let mut arena = Arena::new(&plan)?;
/// let mut step = arena.step(0)?;
/// let [input, output] = step.get_many_mut(["x", "y"])?;
/// input.fill(3);
/// output.copy_from_slice(input);
/// # Ok::<(), memwarden_lifetime::LifetimeError>(())
/// ```
#[derive(Debug)]
pub struct Arena {
    storage: Storage,
    len: usize,
    align: u64,
    steps: usize,
    buffers: Vec<Buffer>,
}

impl Arena {
    /// Allocates a zeroed, aligned arena for `plan` (validated again first).
    ///
    /// # Errors
    ///
    /// [`LifetimeError::InvalidPlan`] when the plan does not validate, and
    /// [`LifetimeError::Allocation`] when the size does not fit in memory.
    pub fn new(plan: &Plan) -> Result<Self, LifetimeError> {
        let (len, buffers) = layout(plan)?;
        let align =
            usize::try_from(plan.align).map_err(|_| alloc_err(plan, "alignment too large"))?;
        let total = len
            .checked_add(align - 1)
            .ok_or_else(|| alloc_err(plan, "size overflows the address space"))?;
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(total)
            .map_err(|e| alloc_err(plan, &e.to_string()))?;
        bytes.resize(total, 0);
        let start = bytes.as_ptr().align_offset(align);
        if start >= align {
            return Err(alloc_err(plan, "cannot align the buffer"));
        }
        Ok(Self {
            storage: Storage::Heap { bytes, start },
            len,
            align: plan.align,
            steps: plan.steps,
            buffers,
        })
    }

    /// Takes the arena from a memory pool: one block of `arena_bytes` aligned to the
    /// plan's alignment, which goes back to the pool's cache when the arena is dropped.
    ///
    /// # Errors
    ///
    /// As [`Arena::new`]; the pool's errors become [`LifetimeError::Allocation`].
    ///
    /// # Panics
    ///
    /// When the pool's backend memory is not host-accessible (a device backend): the
    /// per-step views read and write it from the host.
    #[cfg(feature = "pool")]
    pub fn from_pool(
        plan: &Plan,
        pool: &memwarden_pool::MemoryPool,
    ) -> Result<Self, LifetimeError> {
        let (len, buffers) = layout(plan)?;
        let align =
            usize::try_from(plan.align).map_err(|_| alloc_err(plan, "alignment too large"))?;
        let block = pool
            .allocate_labeled(len, align, &format!("arena:{}", plan.model))
            .map_err(|e| alloc_err(plan, &e.to_string()))?;
        Ok(Self {
            storage: Storage::Pool(block),
            len,
            align: plan.align,
            steps: plan.steps,
            buffers,
        })
    }

    /// The arena size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the arena has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The alignment of the arena's first byte (the plan's).
    pub fn align(&self) -> u64 {
        self.align
    }

    /// Number of steps of the plan.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The whole arena.
    pub fn as_slice(&self) -> &[u8] {
        match &self.storage {
            Storage::Heap { bytes, start } => &bytes[*start..*start + self.len],
            #[cfg(feature = "pool")]
            Storage::Pool(block) => block.as_slice(),
        }
    }

    /// The bytes of every tensor live at step `step`.
    ///
    /// # Errors
    ///
    /// [`LifetimeError::Arena`] when `step` is not a step of the plan.
    pub fn step(&mut self, step: usize) -> Result<StepView<'_>, LifetimeError> {
        if step >= self.steps.max(1) {
            return Err(LifetimeError::Arena {
                problem: format!(
                    "step {step} is out of range (the plan has {} steps)",
                    self.steps
                ),
            });
        }
        let len = self.len;
        let bytes: &mut [u8] = match &mut self.storage {
            Storage::Heap { bytes, start } => &mut bytes[*start..*start + len],
            #[cfg(feature = "pool")]
            Storage::Pool(block) => block.as_mut_slice(),
        };
        let mut live: Vec<&Buffer> = self.buffers.iter().filter(|b| b.live_at(step)).collect();
        live.sort_by_key(|b| b.offset);
        let mut entries = Vec::with_capacity(live.len());
        let mut rest = bytes;
        let mut consumed = 0usize;
        for b in live {
            if b.bytes == 0 {
                // An empty buffer overlaps nothing, wherever the planner put it (often
                // at the offset of a live buffer): it gets an empty slice of its own.
                let names = b.live_names(step);
                entries.push(Entry {
                    names,
                    bytes: &mut [],
                });
                continue;
            }
            // The plan was validated: live non-empty buffers are disjoint, so each
            // starts at or after the end of the previous one.
            let gap = b
                .offset
                .checked_sub(consumed)
                .ok_or_else(|| LifetimeError::InvalidPlan {
                    tensor: b.members[0].0.clone(),
                    other: None,
                    problem: format!("overlaps another buffer live at step {step}"),
                })?;
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(gap);
            let (mine, tail) = tail.split_at_mut(b.bytes);
            rest = tail;
            consumed = b.offset + b.bytes;
            let names = b.live_names(step);
            entries.push(Entry { names, bytes: mine });
        }
        Ok(StepView { step, entries })
    }
}

fn alloc_err(plan: &Plan, reason: &str) -> LifetimeError {
    LifetimeError::Allocation {
        bytes: plan.arena_bytes,
        align: plan.align,
        reason: reason.to_owned(),
    }
}

/// Validates the plan and groups its tensors into buffers.
fn layout(plan: &Plan) -> Result<(usize, Vec<Buffer>), LifetimeError> {
    plan.validate()?;
    let too_big = || alloc_err(plan, "size does not fit in the address space");
    let len = usize::try_from(plan.arena_bytes).map_err(|_| too_big())?;
    let crate::plan::Buffers {
        records,
        offsets,
        owners,
    } = plan.buffers()?;
    let mut buffers: Vec<Buffer> = records
        .iter()
        .zip(&offsets)
        .map(|(r, &o)| -> Result<Buffer, LifetimeError> {
            Ok(Buffer {
                offset: usize::try_from(o).map_err(|_| too_big())?,
                bytes: usize::try_from(r.bytes).map_err(|_| too_big())?,
                members: Vec::new(),
            })
        })
        .collect::<Result<_, _>>()?;
    // Tensor index of an owner -> its buffer.
    let buffer_of: std::collections::HashMap<usize, usize> =
        owners.iter().enumerate().map(|(b, &t)| (t, b)).collect();
    // Every tensor joins the buffer of its owner (the end of its alias chain); the
    // owner comes first in its buffer's member list.
    let by_name: std::collections::HashMap<&str, usize> = plan
        .tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    for (ti, t) in plan.tensors.iter().enumerate() {
        let mut owner = ti;
        while let Some(a) = &plan.tensors[owner].alias_of {
            match by_name.get(a.as_str()) {
                Some(&i) => owner = i,
                None => break,
            }
        }
        let Some(&b) = buffer_of.get(&owner) else {
            return Err(LifetimeError::InvalidPlan {
                tensor: t.name.clone(),
                other: None,
                problem: "has no buffer".to_owned(),
            });
        };
        let bytes = usize::try_from(t.bytes).map_err(|_| too_big())?;
        let member = (t.name.clone(), bytes, t.first_step, t.last_step);
        if owner == ti {
            buffers[b].members.insert(0, member);
        } else {
            buffers[b].members.push(member);
        }
    }
    Ok((len, buffers))
}

/// One buffer live at a step: the live tensors in it and its bytes.
#[derive(Debug)]
struct Entry<'a> {
    /// `(name, bytes)` of each tensor of the buffer live at the step.
    names: Vec<(&'a str, usize)>,
    bytes: &'a mut [u8],
}

/// The tensors live at one step, each with its bytes. Borrowed from
/// [`Arena::step`]; the slices of different buffers never overlap.
#[derive(Debug)]
pub struct StepView<'a> {
    step: usize,
    entries: Vec<Entry<'a>>,
}

impl<'a> StepView<'a> {
    /// The step.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Number of buffers live at the step (tensors sharing a buffer count once).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is live at the step.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Names of the tensors live at the step, by offset.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries
            .iter()
            .flat_map(|e| e.names.iter().map(|(n, _)| *n))
    }

    fn find(&self, name: &str) -> Option<(usize, usize)> {
        self.entries.iter().enumerate().find_map(|(i, e)| {
            e.names
                .iter()
                .find(|(n, _)| *n == name)
                .map(|&(_, bytes)| (i, bytes))
        })
    }

    /// The bytes of tensor `name`, if it is live at this step.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let (i, bytes) = self.find(name)?;
        Some(&self.entries[i].bytes[..bytes])
    }

    /// The bytes of tensor `name` for writing, if it is live at this step.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut [u8]> {
        let (i, bytes) = self.find(name)?;
        Some(&mut self.entries[i].bytes[..bytes])
    }

    /// The bytes of several tensors at once, for an operation that reads some and
    /// writes others.
    ///
    /// # Errors
    ///
    /// [`LifetimeError::Arena`] when a tensor is not live at this step, or when two of the
    /// names share a buffer (an in-place pair: borrow that buffer once, by either
    /// name, with [`get_mut`](Self::get_mut)).
    pub fn get_many_mut<const N: usize>(
        &mut self,
        names: [&str; N],
    ) -> Result<[&mut [u8]; N], LifetimeError> {
        let mut wanted = [(usize::MAX, 0usize); N];
        for (k, name) in names.iter().enumerate() {
            let found = self.find(name).ok_or_else(|| LifetimeError::Arena {
                problem: format!("tensor {name} is not live at step {}", self.step),
            })?;
            if let Some(j) = wanted[..k].iter().position(|w| w.0 == found.0) {
                return Err(LifetimeError::Arena {
                    problem: format!(
                        "tensors {} and {name} share a buffer at step {}",
                        names[j], self.step
                    ),
                });
            }
            wanted[k] = found;
        }
        let mut out: [Option<&mut [u8]>; N] = std::array::from_fn(|_| None);
        for (i, e) in self.entries.iter_mut().enumerate() {
            if let Some(k) = wanted.iter().position(|w| w.0 == i) {
                out[k] = Some(&mut e.bytes[..wanted[k].1]);
            }
        }
        Ok(out.map(Option::unwrap_or_default))
    }

    /// Every live buffer once, named by its first live tensor, with its bytes.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut [u8])> + '_ {
        self.entries.iter_mut().map(|e| {
            let name = e.names.first().map_or("", |(n, _)| *n);
            (name, &mut *e.bytes)
        })
    }
}
