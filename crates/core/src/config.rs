//! Configuration, layered as `dask.config`: built-in defaults, then a
//! `blockwise.toml`, then `BLOCKWISE_*` environment variables, then code.
//!
//! Keys are dotted paths (`array.chunk-size`). In keys, `_` and `-` are the
//! same character, so `BLOCKWISE_NUM_WORKERS` sets `num-workers`; a double
//! underscore in an environment variable is a dot
//! (`BLOCKWISE_ARRAY__CHUNK_SIZE=64MiB` sets `array.chunk-size`).
//!
//! The file is the first found of: `$BLOCKWISE_CONFIG`, `./blockwise.toml`,
//! `$HOME/.config/blockwise/blockwise.toml`. Settings from code ([`set`]) last
//! until the returned guard is dropped, like `with dask.config.set(...)`.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `scheduler` | `threads` | `threads`, `sync`, or a cluster address `tcp://host:port` |
//! | `num-workers` | cores | threads of the `threads` scheduler |
//! | `optimization.fuse` | `true` | fuse linear chains |
//! | `progress` | `auto` | progress bar: `auto` (on a terminal), `always`, `never` |
//! | `array.chunk-size` | `128MiB` | target chunk size for `auto` chunks |

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use parking_lot::RwLock;

use crate::error::{Error, ErrorKind, Result};

/// A configuration value.
pub type ConfigValue = toml::Value;

struct State {
    /// Defaults, file and environment, loaded once.
    base: BTreeMap<String, ConfigValue>,
    /// Where the file came from, for messages.
    file: Option<PathBuf>,
    /// Settings from code, innermost last.
    overrides: Vec<(u64, String, ConfigValue)>,
    next_guard: u64,
}

fn state() -> &'static RwLock<State> {
    static STATE: OnceLock<RwLock<State>> = OnceLock::new();
    STATE.get_or_init(|| {
        let (base, file) = match load_base() {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("ignoring configuration: {e}");
                (defaults(), None)
            }
        };
        RwLock::new(State {
            base,
            file,
            overrides: Vec::new(),
            next_guard: 0,
        })
    })
}

/// Normalizes a key: lower case, `_` → `-`.
pub fn normalize_key(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('_', "-")
}

fn defaults() -> BTreeMap<String, ConfigValue> {
    let mut m = BTreeMap::new();
    m.insert("scheduler".into(), ConfigValue::String("threads".into()));
    m.insert("optimization.fuse".into(), ConfigValue::Boolean(true));
    m.insert("progress".into(), ConfigValue::String("auto".into()));
    m.insert("array.chunk-size".into(), ConfigValue::String("128MiB".into()));
    m
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, ConfigValue>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            normalize_key(k)
        } else {
            format!("{prefix}.{}", normalize_key(k))
        };
        match v {
            ConfigValue::Table(t) => flatten(&key, t, out),
            other => {
                out.insert(key, other.clone());
            }
        }
    }
}

fn config_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BLOCKWISE_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from("blockwise.toml");
    if local.is_file() {
        return Some(local);
    }
    let home = std::env::var_os("HOME")?;
    let user = PathBuf::from(home).join(".config/blockwise/blockwise.toml");
    user.is_file().then_some(user)
}

/// Parses a configuration file's text, flattening tables into dotted keys.
pub fn parse_file(text: &str, origin: &str) -> Result<BTreeMap<String, ConfigValue>> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| Error::new(ErrorKind::Config, format!("{origin}: {e}")))?;
    let mut out = BTreeMap::new();
    flatten("", &table, &mut out);
    Ok(out)
}

/// Parses an environment variable's value: a TOML scalar if it is one
/// (`4`, `true`, `1.5`), else a string.
pub fn parse_env_value(raw: &str) -> ConfigValue {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(t) => t
            .get("v")
            .cloned()
            .unwrap_or_else(|| ConfigValue::String(raw.to_string())),
        Err(_) => ConfigValue::String(raw.to_string()),
    }
}

fn load_base() -> Result<(BTreeMap<String, ConfigValue>, Option<PathBuf>)> {
    let mut base = defaults();
    let file = config_file();
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::new(ErrorKind::Config, format!("cannot read {}: {e}", path.display())))?;
        base.extend(parse_file(&text, &path.display().to_string())?);
    }
    for (name, value) in std::env::vars() {
        if let Some(rest) = name.strip_prefix("BLOCKWISE_") {
            if rest == "CONFIG" || rest == "WORKER" {
                continue;
            }
            let key = rest.split("__").map(normalize_key).collect::<Vec<_>>().join(".");
            base.insert(key, parse_env_value(&value));
        }
    }
    Ok((base, file))
}

/// The current value of `key`, if set anywhere.
pub fn get(key: &str) -> Option<ConfigValue> {
    let key = normalize_key(key);
    let st = state().read();
    st.overrides
        .iter()
        .rev()
        .find(|(_, k, _)| *k == key)
        .map(|(_, _, v)| v.clone())
        .or_else(|| st.base.get(&key).cloned())
}

/// The value of `key` as a string (numbers and booleans are written out).
pub fn get_string(key: &str) -> Option<String> {
    get(key).map(|v| match v {
        ConfigValue::String(s) => s,
        other => other.to_string(),
    })
}

/// The value of `key` as a boolean, or `default`; a value that is not a
/// boolean is an error naming the key.
pub fn get_bool(key: &str, default: bool) -> Result<bool> {
    match get(key) {
        None => Ok(default),
        Some(ConfigValue::Boolean(b)) => Ok(b),
        Some(ConfigValue::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(other) => Err(Error::new(
            ErrorKind::Config,
            format!("configuration key {key} must be true or false, found {other}"),
        )),
    }
}

/// The value of `key` as a non-negative integer, or `None` if unset.
pub fn get_usize(key: &str) -> Result<Option<usize>> {
    match get(key) {
        None => Ok(None),
        Some(ConfigValue::Integer(i)) if i >= 0 => Ok(Some(i as usize)),
        Some(ConfigValue::String(s)) => s.trim().parse().map(Some).map_err(|_| {
            Error::new(
                ErrorKind::Config,
                format!("configuration key {key} must be a whole number, found {s:?}"),
            )
        }),
        Some(other) => Err(Error::new(
            ErrorKind::Config,
            format!("configuration key {key} must be a whole number, found {other}"),
        )),
    }
}

/// The value of `key` as a byte size (`134217728`, `"128MiB"`, `"1.5 GB"`).
pub fn get_bytes(key: &str) -> Result<Option<u64>> {
    match get(key) {
        None => Ok(None),
        Some(ConfigValue::Integer(i)) if i >= 0 => Ok(Some(i as u64)),
        Some(ConfigValue::String(s)) => parse_bytes(&s)
            .map(Some)
            .map_err(|e| e.context(format!("in configuration key {key}"))),
        Some(other) => Err(Error::new(
            ErrorKind::Config,
            format!("configuration key {key} must be a size in bytes, found {other}"),
        )),
    }
}

/// Parses a byte size: a number with an optional unit (B, kB, KiB, MB, MiB, GB, GiB, TB, TiB).
pub fn parse_bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| Error::new(ErrorKind::Config, format!("{text:?} is not a size in bytes")))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        other => {
            return Err(Error::new(
                ErrorKind::Config,
                format!("unknown size unit {other:?} in {text:?}"),
            ));
        }
    };
    Ok((num * mult).round() as u64)
}

/// The configuration file in use, if any.
pub fn file() -> Option<PathBuf> {
    state().read().file.clone()
}

/// Restores the previous settings when dropped.
#[must_use = "the setting is undone when the guard is dropped"]
pub struct ConfigGuard {
    id: u64,
}

impl Drop for ConfigGuard {
    fn drop(&mut self) {
        state().write().overrides.retain(|(id, _, _)| *id != self.id);
    }
}

/// Sets configuration from code until the guard is dropped.
///
/// ```
/// let _guard = blockwise_core::config::set([("scheduler", "sync")]);
/// assert_eq!(blockwise_core::config::get_string("scheduler").as_deref(), Some("sync"));
/// ```
pub fn set<K, V, I>(settings: I) -> ConfigGuard
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: Into<ConfigValue>,
{
    let mut st = state().write();
    let id = st.next_guard;
    st.next_guard += 1;
    for (k, v) in settings {
        st.overrides.push((id, normalize_key(k.as_ref()), v.into()));
    }
    ConfigGuard { id }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_tables_flatten_to_dotted_keys() {
        let m = parse_file("scheduler = 'sync'\n[array]\nchunk_size = '64MiB'\n", "test.toml").unwrap();
        assert_eq!(m["scheduler"].as_str(), Some("sync"));
        assert_eq!(m["array.chunk-size"].as_str(), Some("64MiB"));
    }

    #[test]
    fn bad_file_names_origin() {
        let err = parse_file("scheduler = ", "my.toml").unwrap_err();
        assert!(err.to_string().contains("my.toml"), "{err}");
    }

    #[test]
    fn env_values_are_typed() {
        assert_eq!(parse_env_value("4").as_integer(), Some(4));
        assert_eq!(parse_env_value("true").as_bool(), Some(true));
        assert_eq!(parse_env_value("threads").as_str(), Some("threads"));
        assert_eq!(
            parse_env_value("tcp://127.0.0.1:8786").as_str(),
            Some("tcp://127.0.0.1:8786")
        );
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("128MiB").unwrap(), 128 << 20);
        assert_eq!(parse_bytes("1.5 GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_bytes("42").unwrap(), 42);
        assert!(parse_bytes("12 parsecs").is_err());
    }

    #[test]
    fn code_settings_apply_and_are_undone() {
        let key = "test.only-in-this-test";
        assert!(get(key).is_none());
        {
            let _g = set([(key, 7i64)]);
            assert_eq!(get_usize("test.only_in_this_test").unwrap(), Some(7));
        }
        assert!(get(key).is_none());
    }
}
