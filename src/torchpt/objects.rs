//! The meaning of `torch.save`'s pickled globals and persistent ids for the pickle
//! virtual machine ([`crate::pickle`]): storages, `_rebuild_tensor*` and
//! `_rebuild_parameter*` calls and `OrderedDict`; any other callable is rejected.

use super::PtDtype;
use crate::pickle::{self, Describe, Objects, VmResult};

/// A storage referenced by a persistent id.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct StorageRef {
    pub(super) key: String,
    pub(super) dtype: PtDtype,
    pub(super) numel: u64,
}

/// A tensor as described by data.pkl (its data is still in the storage record).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct TensorRef {
    pub(super) storage: StorageRef,
    pub(super) dtype: PtDtype,
    pub(super) offset: usize,
    pub(super) size: Vec<usize>,
    pub(super) stride: Vec<usize>,
}

/// What a state_dict pickle builds besides plain values.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum TorchObj {
    Storage(StorageRef),
    Tensor(Box<TensorRef>),
}

impl Describe for TorchObj {
    fn describe(&self) -> String {
        match self {
            TorchObj::Storage(s) => format!("a bare storage ('{}')", s.key),
            TorchObj::Tensor(_) => "a bare tensor".into(),
        }
    }
}

/// The values a state_dict pickle is made of.
pub(super) type Value = pickle::Value<TorchObj>;

/// The meaning of `torch.save`'s globals and persistent ids.
pub(super) struct TorchObjects;

impl Objects for TorchObjects {
    type Obj = TorchObj;

    fn call(&mut self, func: Value, args: Vec<Value>) -> VmResult<Value> {
        call(func, args)
    }

    fn build(&mut self, obj: Value, state: Value) -> VmResult<Value> {
        match obj {
            // OrderedDict state (its `_metadata` attribute): irrelevant here.
            Value::Dict(..) => {
                drop(state);
                Ok(obj)
            }
            other => Err(format!("BUILD on {}: unsupported object", other.describe())),
        }
    }

    fn persistent_load(&mut self, pid: Value) -> VmResult<Value> {
        persistent_load(pid)
    }
}

/// Applies one of the few callables a state_dict pickle may use.
fn call(func: Value, args: Vec<Value>) -> VmResult<Value> {
    let (module, name) = match func {
        Value::Global(m, n) => (m, n),
        other => return Err(format!("cannot call {}", other.describe())),
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => {
            if args.is_empty() {
                Ok(Value::Dict(Vec::new(), 1))
            } else {
                Err("collections.OrderedDict called with arguments".into())
            }
        }
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            rebuild_tensor_v2(&name, &args)
        }
        ("torch._utils", "_rebuild_tensor_v3") => rebuild_tensor_v3(&args),
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => {
            // (data, requires_grad, backward_hooks[, state]): the data tensor is what counts.
            match args.into_iter().next() {
                Some(t @ Value::Obj(TorchObj::Tensor(_))) => Ok(t),
                Some(other) => Err(format!("parameter data is {}", other.describe())),
                None => Err(format!("torch._utils.{name} called without arguments")),
            }
        }
        _ => Err(unsupported_global(&module, &name)),
    }
}

/// `_rebuild_tensor(storage, storage_offset, size, stride)` and
/// `_rebuild_tensor_v2(..., requires_grad, backward_hooks[, metadata])`.
fn rebuild_tensor_v2(name: &str, args: &[Value]) -> VmResult<Value> {
    let n = args.len();
    if !(n == 4 || n == 6 || n == 7) || (name == "_rebuild_tensor") != (n == 4) {
        return Err(format!("torch._utils.{name} called with {n} arguments"));
    }
    let storage = storage_arg(&args[0])?;
    let dtype = storage.dtype;
    rebuild_tensor(storage, dtype, &args[1], &args[2], &args[3])
        .map(|t| Value::Obj(TorchObj::Tensor(t)))
}

/// `_rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad,
/// backward_hooks, dtype[, metadata])`.
fn rebuild_tensor_v3(args: &[Value]) -> VmResult<Value> {
    if !(args.len() == 7 || args.len() == 8) {
        return Err(format!(
            "torch._utils._rebuild_tensor_v3 called with {} arguments",
            args.len()
        ));
    }
    let storage = storage_arg(&args[0])?;
    let dtype = match &args[6] {
        Value::Global(m, n) if m == "torch" => PtDtype::from_torch_name(n)
            .ok_or_else(|| format!("unsupported tensor dtype torch.{n}"))?,
        other => return Err(format!("tensor dtype is {}", other.describe())),
    };
    rebuild_tensor(storage, dtype, &args[1], &args[2], &args[3])
        .map(|t| Value::Obj(TorchObj::Tensor(t)))
}

/// The storage argument of a `_rebuild_tensor*` call.
fn storage_arg(v: &Value) -> VmResult<StorageRef> {
    match v {
        Value::Obj(TorchObj::Storage(s)) => Ok(s.clone()),
        other => Err(format!("tensor storage is {}", other.describe())),
    }
}

/// The error for any other global, with a hint when it looks like a whole module.
fn unsupported_global(module: &str, name: &str) -> String {
    format!(
        "unsupported pickle global {module}.{name}: only a dict/OrderedDict of tensors \
         (a state_dict) can be read{}",
        if module.starts_with("torch.nn")
            || module.starts_with("__torch__")
            || name == "_reconstructor"
        {
            " (this looks like a pickled nn.Module or TorchScript archive: save \
             model.state_dict() instead)"
        } else {
            ""
        }
    )
}

fn as_index(v: &Value, what: &str) -> VmResult<usize> {
    match v {
        Value::Int(i) => usize::try_from(*i).map_err(|_| format!("{what} {i} is negative")),
        other => Err(format!("{what} is {}, not an int", other.describe())),
    }
}

fn as_index_tuple(v: &Value, what: &str) -> VmResult<Vec<usize>> {
    match v {
        Value::Tuple(items, _) => items.iter().map(|x| as_index(x, what)).collect(),
        other => Err(format!("{what} is {}, not a tuple", other.describe())),
    }
}

fn rebuild_tensor(
    storage: StorageRef,
    dtype: PtDtype,
    offset: &Value,
    size: &Value,
    stride: &Value,
) -> VmResult<Box<TensorRef>> {
    let offset = as_index(offset, "storage offset")?;
    let size = as_index_tuple(size, "tensor size")?;
    let stride = as_index_tuple(stride, "tensor stride")?;
    if size.len() != stride.len() {
        return Err(format!(
            "tensor size {size:?} and stride {stride:?} differ in length"
        ));
    }
    Ok(Box::new(TensorRef {
        storage,
        dtype,
        offset,
        size,
        stride,
    }))
}

/// `('storage', storage_type, key, location, numel)` -> a storage reference.
fn persistent_load(pid: Value) -> VmResult<Value> {
    let items = match pid {
        Value::Tuple(items, _) => items,
        other => {
            return Err(format!(
                "persistent id is {}, not a tuple",
                other.describe()
            ))
        }
    };
    let text = |v: &Value| -> Option<String> {
        match v {
            Value::Str(s) => Some(s.clone()),
            Value::Bytes(b) => String::from_utf8(b.clone()).ok(),
            _ => None,
        }
    };
    match items.first().and_then(text).as_deref() {
        Some("storage") => {}
        Some(kind) => return Err(format!("unsupported persistent id kind '{kind}'")),
        None => return Err("persistent id does not start with a string".into()),
    }
    if items.len() != 5 {
        return Err(format!(
            "storage persistent id has {} fields, expected 5",
            items.len()
        ));
    }
    let dtype = match &items[1] {
        Value::Global(m, n) if m == "torch" || m == "torch.storage" || m == "torch.cuda" => {
            PtDtype::from_storage_name(n)
                .ok_or_else(|| format!("unsupported storage type {m}.{n}"))?
        }
        other => return Err(format!("storage type is {}", other.describe())),
    };
    let key = match &items[2] {
        Value::Int(i) => i.to_string(),
        v => text(v).ok_or_else(|| format!("storage key is {}", v.describe()))?,
    };
    if key.is_empty() || key.contains('/') || key.contains("..") {
        return Err(format!("invalid storage key {key:?}"));
    }
    let numel = match &items[4] {
        Value::Int(n) => u64::try_from(*n).map_err(|_| format!("storage size {n} is negative"))?,
        other => return Err(format!("storage size is {}", other.describe())),
    };
    Ok(Value::Obj(TorchObj::Storage(StorageRef {
        key,
        dtype,
        numel,
    })))
}
