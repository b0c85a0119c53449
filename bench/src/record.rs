//! One result line: a JSON object whose fields keep the order they were set
//! in, so the common fields (`workload`, `system`, `scheduler`, …) come first.

use serde_json::Value;

/// One JSON result line under construction.
#[derive(Debug, Default)]
pub(crate) struct Record {
    fields: Vec<(&'static str, Value)>,
}

impl Record {
    /// Sets `name` (replacing an earlier value, keeping its position).
    pub(crate) fn set(&mut self, name: &'static str, value: impl Into<Value>) -> &mut Self {
        let value = value.into();
        match self.fields.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.fields.push((name, value)),
        }
        self
    }

    /// The value of `name`, if set.
    #[cfg(test)]
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The record as one line of JSON.
    pub(crate) fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, (name, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&Value::from(*name).to_string());
            out.push_str(": ");
            out.push_str(&value.to_string());
        }
        out.push('}');
        out
    }
}

/// Seconds with microsecond resolution (enough for every timing we report,
/// and short lines).
pub(crate) fn seconds(d: std::time::Duration) -> Value {
    let s = (d.as_secs_f64() * 1e6).round() / 1e6;
    serde_json::Number::from_f64(s)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// A rate rounded to a whole number per second, `null` when the time is zero.
pub(crate) fn per_second(count: usize, d: std::time::Duration) -> Value {
    let s = d.as_secs_f64();
    if s > 0.0 {
        Value::from((count as f64 / s).round() as u64)
    } else {
        Value::Null
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_order_and_replace_in_place() {
        let mut r = Record::default();
        r.set("workload", "tasks-tree")
            .set("n", 3)
            .set("result", Value::Null)
            .set("n", 4);
        assert_eq!(r.to_json(), r#"{"workload": "tasks-tree", "n": 4, "result": null}"#);
        let parsed: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(parsed["n"], 4);
    }
}
