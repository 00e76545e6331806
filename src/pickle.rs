//! The one pickle interpreter of pstl, for `torch.save` state_dicts ([`crate::torchpt`])
//! and AimCLR's label pickles ([`crate::data::npy`]): a virtual machine for protocols
//! 0-5 that builds plain values and never executes anything. What a call, a BUILD or a
//! persistent id means is up to the caller's [`Objects`], which accepts only the few
//! globals its kind of file uses. Nesting depth is bounded ([`MAX_DEPTH`]).
//!
//! This module holds the values, the [`Objects`] trait and the machine's state (input
//! cursor, stack, marks, memo); the opcodes themselves are in `opcodes`.

use std::collections::HashMap;

mod opcodes;

/// Deepest container nesting accepted (guards the recursive drop of values).
pub const MAX_DEPTH: u32 = 512;

/// Python values; containers carry their nesting depth, and `Obj` holds what the
/// [`Objects`] of the caller made of a call, a BUILD or a persistent id.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<O> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Global(String, String),
    Tuple(Vec<Value<O>>, u32),
    List(Vec<Value<O>>, u32),
    Dict(Vec<(Value<O>, Value<O>)>, u32),
    Obj(O),
}

impl<O: Describe> Value<O> {
    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(_, d) | Value::List(_, d) | Value::Dict(_, d) => *d,
            _ => 0,
        }
    }

    /// A tuple of `items` (depth-checked).
    pub fn tuple(items: Vec<Value<O>>) -> Result<Value<O>, String> {
        let d = items.iter().map(Value::depth).max().unwrap_or(0) + 1;
        check_depth(d)?;
        Ok(Value::Tuple(items, d))
    }

    /// A short description for error messages.
    pub fn describe(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => format!("the bool {b}"),
            Value::Int(i) => format!("the int {i}"),
            Value::Float(x) => format!("the float {x}"),
            Value::Str(s) => format!("the string {s:?}"),
            Value::Bytes(b) => format!("{} bytes", b.len()),
            Value::Global(m, n) => format!("the global {m}.{n}"),
            Value::Tuple(v, _) => format!("a tuple of {}", v.len()),
            Value::List(v, _) => format!("a list of {}", v.len()),
            Value::Dict(v, _) => format!("a dict of {}", v.len()),
            Value::Obj(o) => o.describe(),
        }
    }
}

fn check_depth(d: u32) -> Result<(), String> {
    if d > MAX_DEPTH {
        Err(format!("containers nested deeper than {MAX_DEPTH}"))
    } else {
        Ok(())
    }
}

/// A short description of an object for error messages.
pub trait Describe {
    /// e.g. "a bare tensor".
    fn describe(&self) -> String;
}

/// What the callables, BUILDs and persistent ids of one kind of pickle mean. Nothing is
/// ever executed: each implementation accepts only the few globals its files use.
pub trait Objects {
    /// The objects this kind of pickle builds (tensors, NumPy arrays, ...).
    type Obj: Clone + std::fmt::Debug + PartialEq + Describe;
    /// `func(*args)` (REDUCE, NEWOBJ).
    fn call(
        &mut self,
        func: Value<Self::Obj>,
        args: Vec<Value<Self::Obj>>,
    ) -> VmResult<Value<Self::Obj>>;
    /// `obj.__setstate__(state)` (BUILD); the result replaces `obj`.
    fn build(
        &mut self,
        obj: Value<Self::Obj>,
        state: Value<Self::Obj>,
    ) -> VmResult<Value<Self::Obj>>;
    /// `persistent_load(pid)` (BINPERSID).
    fn persistent_load(&mut self, pid: Value<Self::Obj>) -> VmResult<Value<Self::Obj>> {
        Err(format!(
            "persistent id {} is not supported here",
            pid.describe()
        ))
    }
}

/// Runs the pickle `data` to STOP; on error returns (byte offset of the failing
/// opcode, message).
pub fn unpickle<H: Objects>(
    data: &[u8],
    objects: &mut H,
) -> Result<Value<H::Obj>, (usize, String)> {
    Unpickler {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        objects,
    }
    .run()
}

/// The pickle virtual machine: builds [`Value`]s and never executes anything.
struct Unpickler<'a, H: Objects> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value<H::Obj>>,
    /// Stack lengths at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u64, Value<H::Obj>>,
    objects: &'a mut H,
}

/// Errors of the virtual machine: a message.
pub type VmResult<T> = Result<T, String>;

impl<'a, H: Objects> Unpickler<'a, H> {
    fn run(mut self) -> Result<Value<H::Obj>, (usize, String)> {
        loop {
            let at = self.pos;
            match self.step() {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => return Err((at, e)),
            }
        }
    }

    fn take(&mut self, n: usize) -> VmResult<&'a [u8]> {
        let data: &'a [u8] = self.data;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| format!("truncated: needs {n} more bytes"))?;
        let s = &data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> VmResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> VmResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn len_u32(&mut self) -> VmResult<usize> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    fn len_u64(&mut self) -> VmResult<usize> {
        usize::try_from(u64::from_le_bytes(self.array()?)).map_err(|_| "length too large".into())
    }

    /// A text line (protocol 0 arguments), without its newline.
    fn line_bytes(&mut self) -> VmResult<&'a [u8]> {
        let data: &'a [u8] = self.data;
        let rest = &data[self.pos.min(data.len())..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("truncated: unterminated text argument")?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }

    /// A UTF-8 text line.
    fn line(&mut self) -> VmResult<&'a str> {
        std::str::from_utf8(self.line_bytes()?).map_err(|_| "text argument is not UTF-8".into())
    }

    fn utf8(&mut self, n: usize) -> VmResult<Value<H::Obj>> {
        let b = self.take(n)?;
        std::str::from_utf8(b)
            .map(|s| Value::Str(s.to_string()))
            .map_err(|_| "string is not valid UTF-8".into())
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn push(&mut self, v: Value<H::Obj>) {
        self.stack.push(v);
    }

    fn pop(&mut self) -> VmResult<Value<H::Obj>> {
        if self.stack.len() <= self.floor() {
            return Err("stack underflow".into());
        }
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }

    fn top_mut(&mut self) -> VmResult<&mut Value<H::Obj>> {
        if self.stack.len() <= self.floor() {
            return Err("stack underflow".into());
        }
        self.stack
            .last_mut()
            .ok_or_else(|| "stack underflow".into())
    }

    fn pop_mark(&mut self) -> VmResult<Vec<Value<H::Obj>>> {
        let m = self.marks.pop().ok_or("no MARK on the stack")?;
        if m > self.stack.len() {
            return Err("stack underflow".into());
        }
        Ok(self.stack.split_off(m))
    }

    fn memo_put(&mut self, idx: u64) -> VmResult<()> {
        let v = self.top_mut()?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }

    fn memo_get(&mut self, idx: u64) -> VmResult<()> {
        let v = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| format!("memo entry {idx} is not defined"))?;
        self.push(v);
        Ok(())
    }

    fn set_items(&mut self, pairs: Vec<Value<H::Obj>>) -> VmResult<()> {
        if pairs.len() % 2 != 0 {
            return Err("SETITEMS with an odd number of items".into());
        }
        match self.top_mut()? {
            Value::Dict(items, depth) => {
                let mut it = pairs.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    let d = k.depth().max(v.depth()) + 1;
                    check_depth(d)?;
                    *depth = (*depth).max(d);
                    // Python semantics: an existing key keeps its place, gets the new value.
                    match items.iter_mut().find(|(ek, _)| *ek == k) {
                        Some(slot) => slot.1 = v,
                        None => items.push((k, v)),
                    }
                }
                Ok(())
            }
            other => Err(format!("SETITEM(S) on {}, not a dict", other.describe())),
        }
    }

    fn append(&mut self, values: Vec<Value<H::Obj>>) -> VmResult<()> {
        match self.top_mut()? {
            Value::List(items, depth) => {
                for v in values {
                    let d = v.depth() + 1;
                    check_depth(d)?;
                    *depth = (*depth).max(d);
                    items.push(v);
                }
                Ok(())
            }
            other => Err(format!("APPEND(S) on {}, not a list", other.describe())),
        }
    }
}

/// LONG1/LONG4 payload: little-endian two's complement, must fit an i64.
pub fn long_from_bytes(b: &[u8]) -> VmResult<i64> {
    if b.is_empty() {
        return Ok(0);
    }
    let negative = b[b.len() - 1] & 0x80 != 0;
    let fill = if negative { 0xff } else { 0x00 };
    if b.len() > 8 && b[8..].iter().any(|&x| x != fill) {
        return Err("integer does not fit in 64 bits".into());
    }
    let mut a = [fill; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    let v = i64::from_le_bytes(a);
    if (v < 0) != negative {
        return Err("integer does not fit in 64 bits".into());
    }
    Ok(v)
}

/// Decodes Python's `raw-unicode-escape` (protocol 0 `UNICODE` opcode).
fn raw_unicode_unescape(text: &str) -> VmResult<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.peek(), Some('u') | Some('U')) {
            let width = if chars.next() == Some('u') { 4 } else { 8 };
            let hex: String = chars.by_ref().take(width).collect();
            let code = u32::from_str_radix(&hex, 16).map_err(|_| format!("bad escape \\{hex}"))?;
            out.push(char::from_u32(code).ok_or_else(|| format!("bad code point {code:x}"))?);
        } else {
            out.push(c);
        }
    }
    Ok(out)
}
