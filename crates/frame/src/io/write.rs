//! Writing partitions to files, one file per partition, atomically.
//!
//! Each task writes its partition to a hidden temporary name in the target
//! directory (`.<name>.<pid>.tmp`), then renames it into place. A rename
//! within one directory is atomic, so a reader — or a failed computation —
//! never sees a half-written file: either the complete file is there, or
//! nothing is (a failed write removes its temporary file).

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use blockwise_core::{Error, ErrorKind, Result, Value};
use serde::{Deserialize, Serialize};

use crate::ops::{FrameTask, register_task};
use crate::partition::frame_of;
use crate::polars_api::{self, io_err};

/// A file format to write.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum WriteFormat {
    /// CSV with a header line and this separator.
    Csv(u8),
    /// Parquet, Zstd-compressed, with statistics.
    Parquet,
}

/// Writes one partition to `path`.
#[derive(Serialize, Deserialize)]
pub(crate) struct WriteTask {
    pub(crate) path: String,
    pub(crate) format: WriteFormat,
}

impl FrameTask for WriteTask {
    const NAME: &'static str = "frame.write";
    fn run(&self, args: &[Value]) -> Result<Value> {
        let df = frame_of(
            args.first()
                .ok_or_else(|| Error::graph("frame.write needs a partition"))?,
        )?;
        let target = PathBuf::from(&self.path);
        let tmp = temp_name(&target);
        let result = (|| -> Result<()> {
            let file = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
            let mut w = BufWriter::new(file);
            match self.format {
                WriteFormat::Csv(sep) => polars_api::csv_write(&df, &mut w, sep)?,
                WriteFormat::Parquet => polars_api::parquet_write(&df, &mut w)?,
            }
            let file = w.into_inner().map_err(|e| io_err(&tmp, e.into_error()))?;
            file.sync_all().map_err(|e| io_err(&tmp, e))?;
            std::fs::rename(&tmp, &target).map_err(|e| io_err(&target, e))
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.context(format!("writing {}", target.display())));
        }
        Ok(std::sync::Arc::new(self.path.clone()))
    }
}
register_task!(WriteTask);

fn temp_name(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// The file names of a write: `name(i)` for each partition, inside `dir`
/// (created if missing). Two partitions may not share a name.
pub(crate) fn targets(dir: &Path, n: usize, name: &dyn Fn(usize) -> String) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let file = name(i);
        if !seen.insert(file.clone()) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("the name function gives {file:?} for two partitions; names must differ"),
            ));
        }
        out.push(dir.join(file).to_string_lossy().into_owned());
    }
    Ok(out)
}
