//! The one pickle interpreter of pstl, for `torch.save` state_dicts ([`crate::torchpt`])
//! and AimCLR's label pickles ([`crate::data::npy`]): a virtual machine for protocols
//! 0-5 that builds plain values and never executes anything. What a call, a BUILD or a
//! persistent id means is up to the caller's [`Objects`], which accepts only the few
//! globals its kind of file uses. Nesting depth is bounded ([`MAX_DEPTH`]).

use std::collections::HashMap;

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

    /// Executes one opcode; `Some(result)` at STOP.
    fn step(&mut self) -> VmResult<Option<Value<H::Obj>>> {
        let op = self
            .u8()
            .map_err(|_| "truncated: no STOP opcode".to_string())?;
        match op {
            0x80 => {
                // PROTO
                let p = self.u8()?;
                if p > 5 {
                    return Err(format!("unsupported pickle protocol {p}"));
                }
            }
            0x95 => {
                // FRAME (protocol 4): the frame length is only a hint.
                self.take(8)?;
            }
            b'.' => return self.pop().map(Some),       // STOP
            b'(' => self.marks.push(self.stack.len()), // MARK
            b'}' => self.push(Value::Dict(Vec::new(), 1)), // EMPTY_DICT
            b']' => self.push(Value::List(Vec::new(), 1)), // EMPTY_LIST
            b')' => self.push(Value::Tuple(Vec::new(), 1)), // EMPTY_TUPLE
            b't' => {
                // TUPLE
                let items = self.pop_mark()?;
                let t = Value::tuple(items)?;
                self.push(t);
            }
            0x85..=0x87 => {
                // TUPLE1..3
                let n = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                let t = Value::tuple(items)?;
                self.push(t);
            }
            b'l' => {
                // LIST
                let items = self.pop_mark()?;
                self.push(Value::List(Vec::new(), 1));
                self.append(items)?;
            }
            b'd' => {
                // DICT
                let items = self.pop_mark()?;
                self.push(Value::Dict(Vec::new(), 1));
                self.set_items(items)?;
            }
            b'a' => {
                // APPEND
                let v = self.pop()?;
                self.append(vec![v])?;
            }
            b'e' => {
                // APPENDS
                let items = self.pop_mark()?;
                self.append(items)?;
            }
            b's' => {
                // SETITEM
                let v = self.pop()?;
                let k = self.pop()?;
                self.set_items(vec![k, v])?;
            }
            b'u' => {
                // SETITEMS
                let items = self.pop_mark()?;
                self.set_items(items)?;
            }
            b'J' => {
                // BININT
                let v = i32::from_le_bytes(self.array()?);
                self.push(Value::Int(i64::from(v)));
            }
            b'K' => {
                // BININT1
                let v = self.u8()?;
                self.push(Value::Int(i64::from(v)));
            }
            b'M' => {
                // BININT2
                let v = u16::from_le_bytes(self.array()?);
                self.push(Value::Int(i64::from(v)));
            }
            0x8a | 0x8b => {
                // LONG1 / LONG4: little-endian two's complement
                let n = if op == 0x8a {
                    usize::from(self.u8()?)
                } else {
                    self.len_u32()?
                };
                let b = self.take(n)?;
                let v = long_from_bytes(b)?;
                self.push(Value::Int(v));
            }
            b'I' => {
                // INT (text; "00"/"01" are the protocol-0 booleans)
                let s = self.line()?;
                let v = match s {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    _ => Value::Int(s.parse().map_err(|_| format!("bad INT argument {s:?}"))?),
                };
                self.push(v);
            }
            b'L' => {
                // LONG (text)
                let s = self.line()?;
                let v = s
                    .strip_suffix('L')
                    .unwrap_or(s)
                    .parse()
                    .map_err(|_| format!("bad or too large LONG argument {s:?}"))?;
                self.push(Value::Int(v));
            }
            b'G' => {
                // BINFLOAT (big-endian)
                let v = f64::from_be_bytes(self.array()?);
                self.push(Value::Float(v));
            }
            b'F' => {
                // FLOAT (text)
                let s = self.line()?;
                let v = s.parse().map_err(|_| format!("bad FLOAT argument {s:?}"))?;
                self.push(Value::Float(v));
            }
            0x88 => self.push(Value::Bool(true)),  // NEWTRUE
            0x89 => self.push(Value::Bool(false)), // NEWFALSE
            b'N' => self.push(Value::None),        // NONE
            b'X' => {
                // BINUNICODE
                let n = self.len_u32()?;
                let v = self.utf8(n)?;
                self.push(v);
            }
            0x8c => {
                // SHORT_BINUNICODE
                let n = usize::from(self.u8()?);
                let v = self.utf8(n)?;
                self.push(v);
            }
            0x8d => {
                // BINUNICODE8
                let n = self.len_u64()?;
                let v = self.utf8(n)?;
                self.push(v);
            }
            b'T' | b'U' => {
                // BINSTRING / SHORT_BINSTRING (Python 2 str): decode as Latin-1
                let n = if op == b'T' {
                    self.len_u32()?
                } else {
                    usize::from(self.u8()?)
                };
                let s = self.take(n)?.iter().map(|&b| char::from(b)).collect();
                self.push(Value::Str(s));
            }
            b'B' | b'C' | 0x8e => {
                // BINBYTES / SHORT_BINBYTES / BINBYTES8
                let n = match op {
                    b'B' => self.len_u32()?,
                    b'C' => usize::from(self.u8()?),
                    _ => self.len_u64()?,
                };
                let b = self.take(n)?.to_vec();
                self.push(Value::Bytes(b));
            }
            b'c' => {
                // GLOBAL
                let module = self.line()?.to_string();
                let name = self.line()?.to_string();
                self.push(Value::Global(module, name));
            }
            0x93 => {
                // STACK_GLOBAL
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => self.push(Value::Global(m, n)),
                    _ => return Err("STACK_GLOBAL arguments are not strings".into()),
                }
            }
            b'q' => {
                // BINPUT
                let i = self.u8()?;
                self.memo_put(u64::from(i))?;
            }
            b'r' => {
                // LONG_BINPUT
                let i = u32::from_le_bytes(self.array()?);
                self.memo_put(u64::from(i))?;
            }
            b'p' => {
                // PUT (text)
                let s = self.line()?;
                let i = s.parse().map_err(|_| format!("bad PUT argument {s:?}"))?;
                self.memo_put(i)?;
            }
            0x94 => {
                // MEMOIZE
                let i = self.memo.len() as u64;
                self.memo_put(i)?;
            }
            b'h' => {
                // BINGET
                let i = self.u8()?;
                self.memo_get(u64::from(i))?;
            }
            b'j' => {
                // LONG_BINGET
                let i = u32::from_le_bytes(self.array()?);
                self.memo_get(u64::from(i))?;
            }
            b'g' => {
                // GET (text)
                let s = self.line()?;
                let i = s.parse().map_err(|_| format!("bad GET argument {s:?}"))?;
                self.memo_get(i)?;
            }
            b'0' => {
                // POP (pops the topmost MARK when the stack above it is empty)
                if self.stack.len() > self.floor() {
                    self.pop()?;
                } else {
                    self.pop_mark()?;
                }
            }
            b'1' => {
                // POP_MARK
                self.pop_mark()?;
            }
            b'2' => {
                // DUP
                let v = self.top_mut()?.clone();
                self.push(v);
            }
            b'R' | 0x81 | 0x92 => {
                // REDUCE / NEWOBJ / NEWOBJ_EX (keyword arguments are not used)
                if op == 0x92 {
                    self.pop()?;
                }
                let args = match self.pop()? {
                    Value::Tuple(a, _) => a,
                    other => {
                        return Err(format!(
                            "call arguments are {}, not a tuple",
                            other.describe()
                        ))
                    }
                };
                let func = self.pop()?;
                let v = self.objects.call(func, args)?;
                self.push(v);
            }
            b'b' => {
                // BUILD
                let state = self.pop()?;
                let obj = self.pop()?;
                let v = self.objects.build(obj, state)?;
                self.push(v);
            }
            b'Q' => {
                // BINPERSID
                let pid = self.pop()?;
                let v = self.objects.persistent_load(pid)?;
                self.push(v);
            }
            b'V' => {
                // UNICODE (text, raw-unicode-escape: latin-1 plus \uXXXX escapes)
                let line = self.line_bytes()?;
                let t: String = line.iter().map(|&b| char::from(b)).collect();
                self.push(Value::Str(raw_unicode_unescape(&t)?));
            }
            b'S' => {
                // STRING (text, quoted)
                let t = self.line()?.trim();
                let inner = t
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| t.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                    .ok_or_else(|| format!("bad STRING argument {t:?}"))?;
                self.push(Value::Str(inner.replace("\\'", "'")));
            }
            0x96 => {
                // BYTEARRAY8
                let n = self.len_u64()?;
                let b = self.take(n)?.to_vec();
                self.push(Value::Bytes(b));
            }
            0x8f => self.push(Value::List(Vec::new(), 1)), // EMPTY_SET (kept as a list)
            0x90 => {
                // ADDITEMS
                let items = self.pop_mark()?;
                self.append(items)?;
            }
            0x91 => {
                // FROZENSET (kept as a tuple)
                let items = self.pop_mark()?;
                let t = Value::tuple(items)?;
                self.push(t);
            }
            _ => {
                return Err(format!(
                    "unsupported pickle opcode 0x{op:02x}{}",
                    if op.is_ascii_graphic() {
                        format!(" ('{}')", char::from(op))
                    } else {
                        String::new()
                    }
                ))
            }
        }
        Ok(None)
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
