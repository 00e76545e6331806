//! The opcodes of the pickle virtual machine: a short dispatcher ([`Unpickler::step`])
//! that hands each opcode to the handler of its group (framing, stack and memo,
//! containers, numbers, strings, globals and calls).

use super::{long_from_bytes, raw_unicode_unescape, Objects, Unpickler, Value, VmResult};

/// The error for an opcode this virtual machine does not implement.
fn unsupported(op: u8) -> String {
    format!(
        "unsupported pickle opcode 0x{op:02x}{}",
        if op.is_ascii_graphic() {
            format!(" ('{}')", char::from(op))
        } else {
            String::new()
        }
    )
}

impl<H: Objects> Unpickler<'_, H> {
    /// Executes one opcode; `Some(result)` at STOP.
    pub(super) fn step(&mut self) -> VmResult<Option<Value<H::Obj>>> {
        let op = self
            .u8()
            .map_err(|_| "truncated: no STOP opcode".to_string())?;
        match op {
            b'.' => return self.pop().map(Some), // STOP
            0x80 | 0x95 => self.framing(op)?,
            b'(' | b'0' | b'1' | b'2' => self.stack_op(op)?,
            b'q' | b'r' | b'p' | 0x94 | b'h' | b'j' | b'g' => self.memo_op(op)?,
            b'}' | b']' | b')' | 0x8f | b't' | 0x85..=0x87 | b'l' | b'd' | 0x91 => {
                self.container(op)?
            }
            b'a' | b'e' | b's' | b'u' | 0x90 => self.fill(op)?,
            b'J' | b'K' | b'M' | 0x8a | 0x8b | b'I' | b'L' | b'G' | b'F' | 0x88 | 0x89 | b'N' => {
                self.number(op)?
            }
            b'X' | 0x8c | 0x8d | b'T' | b'U' | b'B' | b'C' | 0x8e | 0x96 => {
                self.binary_string(op)?
            }
            b'V' | b'S' => self.text_string(op)?,
            b'c' | 0x93 | b'R' | 0x81 | 0x92 | b'b' | b'Q' => self.object(op)?,
            _ => return Err(unsupported(op)),
        }
        Ok(None)
    }

    /// PROTO, FRAME.
    fn framing(&mut self, op: u8) -> VmResult<()> {
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
            _ => return Err(unsupported(op)),
        }
        Ok(())
    }

    /// MARK, POP, POP_MARK, DUP.
    fn stack_op(&mut self, op: u8) -> VmResult<()> {
        match op {
            b'(' => self.marks.push(self.stack.len()), // MARK
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
            _ => return Err(unsupported(op)),
        }
        Ok(())
    }

    /// BINPUT, LONG_BINPUT, PUT, MEMOIZE; BINGET, LONG_BINGET, GET.
    fn memo_op(&mut self, op: u8) -> VmResult<()> {
        match op {
            b'q' => {
                // BINPUT
                let i = self.u8()?;
                self.memo_put(u64::from(i))
            }
            b'r' => {
                // LONG_BINPUT
                let i = u32::from_le_bytes(self.array()?);
                self.memo_put(u64::from(i))
            }
            b'p' => {
                // PUT (text)
                let s = self.line()?;
                let i = s.parse().map_err(|_| format!("bad PUT argument {s:?}"))?;
                self.memo_put(i)
            }
            0x94 => {
                // MEMOIZE
                let i = self.memo.len() as u64;
                self.memo_put(i)
            }
            b'h' => {
                // BINGET
                let i = self.u8()?;
                self.memo_get(u64::from(i))
            }
            b'j' => {
                // LONG_BINGET
                let i = u32::from_le_bytes(self.array()?);
                self.memo_get(u64::from(i))
            }
            b'g' => {
                // GET (text)
                let s = self.line()?;
                let i = s.parse().map_err(|_| format!("bad GET argument {s:?}"))?;
                self.memo_get(i)
            }
            _ => Err(unsupported(op)),
        }
    }

    /// New containers: EMPTY_DICT/LIST/TUPLE/SET, TUPLE, TUPLE1..3, LIST, DICT, FROZENSET.
    fn container(&mut self, op: u8) -> VmResult<()> {
        match op {
            b'}' => self.push(Value::Dict(Vec::new(), 1)), // EMPTY_DICT
            b']' => self.push(Value::List(Vec::new(), 1)), // EMPTY_LIST
            b')' => self.push(Value::Tuple(Vec::new(), 1)), // EMPTY_TUPLE
            0x8f => self.push(Value::List(Vec::new(), 1)), // EMPTY_SET (kept as a list)
            b't' | 0x91 => {
                // TUPLE / FROZENSET (kept as a tuple)
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
            _ => return Err(unsupported(op)),
        }
        Ok(())
    }

    /// Filling the container on top: APPEND, APPENDS, ADDITEMS, SETITEM, SETITEMS.
    fn fill(&mut self, op: u8) -> VmResult<()> {
        match op {
            b'a' => {
                // APPEND
                let v = self.pop()?;
                self.append(vec![v])
            }
            b'e' | 0x90 => {
                // APPENDS / ADDITEMS
                let items = self.pop_mark()?;
                self.append(items)
            }
            b's' => {
                // SETITEM
                let v = self.pop()?;
                let k = self.pop()?;
                self.set_items(vec![k, v])
            }
            b'u' => {
                // SETITEMS
                let items = self.pop_mark()?;
                self.set_items(items)
            }
            _ => Err(unsupported(op)),
        }
    }

    /// Ints, floats, bools and None, binary and text.
    fn number(&mut self, op: u8) -> VmResult<()> {
        let v = match op {
            b'J' => Value::Int(i64::from(i32::from_le_bytes(self.array()?))), // BININT
            b'K' => Value::Int(i64::from(self.u8()?)),                        // BININT1
            b'M' => Value::Int(i64::from(u16::from_le_bytes(self.array()?))), // BININT2
            0x8a | 0x8b => {
                // LONG1 / LONG4: little-endian two's complement
                let n = if op == 0x8a {
                    usize::from(self.u8()?)
                } else {
                    self.len_u32()?
                };
                Value::Int(long_from_bytes(self.take(n)?)?)
            }
            b'I' => {
                // INT (text; "00"/"01" are the protocol-0 booleans)
                let s = self.line()?;
                match s {
                    "00" => Value::Bool(false),
                    "01" => Value::Bool(true),
                    _ => Value::Int(s.parse().map_err(|_| format!("bad INT argument {s:?}"))?),
                }
            }
            b'L' => {
                // LONG (text)
                let s = self.line()?;
                let v = s
                    .strip_suffix('L')
                    .unwrap_or(s)
                    .parse()
                    .map_err(|_| format!("bad or too large LONG argument {s:?}"))?;
                Value::Int(v)
            }
            b'G' => Value::Float(f64::from_be_bytes(self.array()?)), // BINFLOAT (big-endian)
            b'F' => {
                // FLOAT (text)
                let s = self.line()?;
                Value::Float(s.parse().map_err(|_| format!("bad FLOAT argument {s:?}"))?)
            }
            0x88 => Value::Bool(true),  // NEWTRUE
            0x89 => Value::Bool(false), // NEWFALSE
            b'N' => Value::None,        // NONE
            _ => return Err(unsupported(op)),
        };
        self.push(v);
        Ok(())
    }

    /// Length-prefixed strings and bytes: BINUNICODE(8), SHORT_BINUNICODE,
    /// (SHORT_)BINSTRING, (SHORT_)BINBYTES(8), BYTEARRAY8.
    fn binary_string(&mut self, op: u8) -> VmResult<()> {
        let v = match op {
            b'X' => {
                // BINUNICODE
                let n = self.len_u32()?;
                self.utf8(n)?
            }
            0x8c => {
                // SHORT_BINUNICODE
                let n = usize::from(self.u8()?);
                self.utf8(n)?
            }
            0x8d => {
                // BINUNICODE8
                let n = self.len_u64()?;
                self.utf8(n)?
            }
            b'T' | b'U' => {
                // BINSTRING / SHORT_BINSTRING (Python 2 str): decode as Latin-1
                let n = if op == b'T' {
                    self.len_u32()?
                } else {
                    usize::from(self.u8()?)
                };
                Value::Str(self.take(n)?.iter().map(|&b| char::from(b)).collect())
            }
            b'B' | b'C' | 0x8e | 0x96 => {
                // BINBYTES / SHORT_BINBYTES / BINBYTES8 / BYTEARRAY8
                let n = match op {
                    b'B' => self.len_u32()?,
                    b'C' => usize::from(self.u8()?),
                    _ => self.len_u64()?,
                };
                Value::Bytes(self.take(n)?.to_vec())
            }
            _ => return Err(unsupported(op)),
        };
        self.push(v);
        Ok(())
    }

    /// Protocol-0 text strings: UNICODE, STRING.
    fn text_string(&mut self, op: u8) -> VmResult<()> {
        let s = match op {
            b'V' => {
                // UNICODE (text, raw-unicode-escape: latin-1 plus \uXXXX escapes)
                let line = self.line_bytes()?;
                let t: String = line.iter().map(|&b| char::from(b)).collect();
                raw_unicode_unescape(&t)?
            }
            b'S' => {
                // STRING (text, quoted)
                let t = self.line()?.trim();
                let inner = t
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| t.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                    .ok_or_else(|| format!("bad STRING argument {t:?}"))?;
                inner.replace("\\'", "'")
            }
            _ => return Err(unsupported(op)),
        };
        self.push(Value::Str(s));
        Ok(())
    }

    /// Globals and what the caller's [`Objects`] make of them: GLOBAL, STACK_GLOBAL,
    /// REDUCE, NEWOBJ(_EX), BUILD, BINPERSID.
    fn object(&mut self, op: u8) -> VmResult<()> {
        let v = match op {
            b'c' => {
                // GLOBAL
                let module = self.line()?.to_string();
                let name = self.line()?.to_string();
                Value::Global(module, name)
            }
            0x93 => {
                // STACK_GLOBAL
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => Value::Global(m, n),
                    _ => return Err("STACK_GLOBAL arguments are not strings".into()),
                }
            }
            b'R' | 0x81 | 0x92 => self.call(op)?,
            b'b' => {
                // BUILD
                let state = self.pop()?;
                let obj = self.pop()?;
                self.objects.build(obj, state)?
            }
            b'Q' => {
                // BINPERSID
                let pid = self.pop()?;
                self.objects.persistent_load(pid)?
            }
            _ => return Err(unsupported(op)),
        };
        self.push(v);
        Ok(())
    }

    /// REDUCE / NEWOBJ / NEWOBJ_EX (keyword arguments are not used): the call's result.
    fn call(&mut self, op: u8) -> VmResult<Value<H::Obj>> {
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
        self.objects.call(func, args)
    }
}
