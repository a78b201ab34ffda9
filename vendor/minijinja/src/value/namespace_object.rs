use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorKind};
use crate::value::{Enumerator, Object, ObjectRepr, Value};

/// This object exists for the `namespace` function.
///
/// It's special in that it behaves like a dictionary in many ways but it's the only
/// object that can be used with `{% set %}` assignments.  This is used internally
/// in the vm via downcasting.
#[derive(Debug, Default)]
pub(crate) struct Namespace {
    data: Mutex<BTreeMap<Arc<str>, Value>>,
}

impl Object for Namespace {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.data.lock().unwrap().get(some!(key.as_str())).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let data = self.data.lock().unwrap();
        let keys = data.keys().cloned().map(Value::from);
        Enumerator::Values(keys.collect())
    }
}

/// The most containers an assignment to a namespace looks through for the namespace itself,
/// where no fuel budget ends the walk first.
const MAX_CHECKED: usize = 10_000_000;

/// Fuel units charged per container the check visits (a built-in filter's item visit,
/// `vm::fuel::ITEM_COST`), and per other value (a byte's worth, `vm::fuel::BYTE_COST`).
const CONTAINER_COST: u64 = 32;
const VALUE_COST: u64 = 1;

impl Namespace {
    pub(crate) fn set_value(&self, key: &str, value: Value) {
        self.data.lock().unwrap().insert(key.into(), value);
    }

    /// `{% set ns.key = value %}`, refused where `value` holds this namespace (kiln's patch):
    /// a namespace that holds itself is a cycle, and printing, comparing or serializing it
    /// recursed without end (a stack overflow that aborts the process), and it was never
    /// freed. Namespaces are the only mutable values, so an assignment to one is the only
    /// way to make a cycle. `charge` is called with the fuel units of each container
    /// visited, and ends the check with its error.
    pub(crate) fn try_set_value(
        &self,
        key: &str,
        value: Value,
        charge: &dyn Fn(u64) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if holds(&value, self, charge)? {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("cannot assign to namespace attribute '{key}' a value that holds the namespace itself"),
            ));
        }
        self.set_value(key, value);
        Ok(())
    }
}

/// Whether `value` is or holds `target`, through lists, maps, namespaces and finite lazy
/// sequences (`a + b`, `|reverse`, slices, `seq * n`). Values are acyclic before an
/// assignment, so the walk ends; it keeps its own stack, so deep nesting cannot overflow the
/// thread's.
fn holds(
    value: &Value,
    target: &Namespace,
    charge: &dyn Fn(u64) -> Result<(), Error>,
) -> Result<bool, Error> {
    let mut todo = vec![value.clone()];
    let mut checked = 0usize;
    // Charged in batches, and what is left at the end.
    let mut owed = 0u64;
    while let Some(v) = todo.pop() {
        if owed >= 4096 {
            ok!(charge(std::mem::take(&mut owed)));
        }
        let Some(obj) = v.as_object() else {
            owed += VALUE_COST; // strings, numbers and the like hold nothing
            continue;
        };
        owed += CONTAINER_COST;
        checked += 1;
        if checked > MAX_CHECKED {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "a value assigned to a namespace is too large to check for cycles",
            ));
        }
        if let Some(ns) = v.downcast_object_ref::<Namespace>() {
            if std::ptr::eq(ns, target) {
                return Ok(true);
            }
            todo.extend(ns.data.lock().unwrap().values().cloned());
            continue;
        }
        match obj.repr() {
            ObjectRepr::Seq => todo.extend(ok!(v.try_iter())),
            ObjectRepr::Iterable if obj.enumerator_len().is_some() => {
                todo.extend(ok!(v.try_iter()))
            }
            ObjectRepr::Map => {
                for key in ok!(v.try_iter()) {
                    if let Ok(item) = v.get_item(&key) {
                        todo.push(item);
                    }
                    todo.push(key);
                }
            }
            _ => {}
        }
    }
    ok!(charge(owed));
    Ok(false)
}
