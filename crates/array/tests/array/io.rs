//! Storage: .npy, .npy stacks, Zarr v3 — round trips, corrupt files, and
//! real interchange with NumPy and zarr-python (run from the project's
//! virtualenv, `tools/python-env`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use blockwise_array::{ZarrCompression, from_array, from_npy, from_npy_stack, from_zarr, random};
use blockwise_core::ErrorKind;
use blockwise_local::{Compute, ComputeOptions, Scheduler};
use ndarray::{ArrayD, IxDyn};

use crate::common::*;

fn tmp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "blockwise-array-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The project's Python (numpy 2, zarr 3), made by `tools/python-env`.
fn python() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/python-env");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run tools/python-env");
    assert!(
        out.status.success(),
        "tools/python-env failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn run_python(code: &str, dir: &Path) {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .arg(dir)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `np.arange(n).reshape(shape) * 0.5 - 3` in Rust.
fn ramp(shape: &[usize]) -> ArrayD<f64> {
    let mut k = 0.0;
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        let v = k * 0.5 - 3.0;
        k += 1.0;
        v
    })
}

const PY_RAMP: &str = "import sys, numpy as np, pathlib\nd = pathlib.Path(sys.argv[1])\ndef ramp(shape): return np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) * 0.5 - 3\n";

#[test]
fn npy_roundtrip_on_both_executors() {
    let dir = tmp_dir("npy");
    let a = ramp(&[13, 7, 3]);
    let x = from_array(&a, &[4, 3, 2]).unwrap();
    for (i, o) in executors().into_iter().enumerate() {
        let path = dir.join(format!("x{i}.npy"));
        x.to_npy_with(&path, o).unwrap();
        let back = from_npy::<f64>(&path, &[5, 7, 3]).unwrap();
        assert_computes(&back, &a);
        let partial = from_npy::<f64>(&path, &[2, 2, 2])
            .unwrap()
            .slice([sl(3, Some(9), 2)])
            .unwrap();
        assert_computes(&partial, &slice_nd(&a, &[sl(3, Some(9), 2)]));
    }
    let flags = from_array(&a.mapv(|v| v > 0.0), &[5, 2, 3]).unwrap();
    flags.to_npy(dir.join("b.npy")).unwrap();
    assert_computes(
        &from_npy::<bool>(dir.join("b.npy"), &[13, 7, 3]).unwrap(),
        &a.mapv(|v| v > 0.0),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn npy_stack_roundtrip() {
    let dir = tmp_dir("stack");
    let a = ramp(&[10, 4]).mapv(|v| v as i32);
    let x = from_array(&a, &[3, 2]).unwrap();
    x.to_npy_stack(dir.join("s"), 0).unwrap();
    assert!(dir.join("s/3.npy").is_file() && !dir.join("s/4.npy").exists());
    let back = from_npy_stack::<i32>(dir.join("s")).unwrap();
    assert_eq!(back.chunks().axis(0), &[3, 3, 3, 1]);
    assert_computes(&back, &a);
    let err = from_npy_stack::<f64>(dir.join("s")).unwrap_err();
    assert!(err.to_string().contains("not f64"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn zarr_roundtrip_every_compression() {
    let dir = tmp_dir("zarr");
    let x = random::uniform(&[30, 17], &[8, 5], 4).unwrap();
    let a = compute_both(&x);
    for (i, c) in [
        ZarrCompression::None,
        ZarrCompression::Zstd(3),
        ZarrCompression::Gzip(5),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.join(format!("z{i}"));
        x.to_zarr_with(&path, c, ComputeOptions::new().scheduler(Scheduler::Threads(Some(2))))
            .unwrap();
        let back = from_zarr::<f64>(&path, None).unwrap();
        assert_eq!(back.chunks().axis(0), &[8, 8, 8, 6]);
        assert_computes(&back, &a);
        let other = from_zarr::<f64>(&path, Some((&[7, 17]).into())).unwrap();
        assert_computes(&other, &a);
    }
    // irregular chunks are rechunked to a regular grid before writing
    let irregular = from_array(&a, vec![vec![10, 20], vec![17]]).unwrap();
    irregular.to_zarr(dir.join("irr"), ZarrCompression::None).unwrap();
    assert_computes(&from_zarr::<f64>(dir.join("irr"), None).unwrap(), &a);
    let err = from_zarr::<i32>(dir.join("irr"), None).unwrap_err();
    assert!(err.to_string().contains("float64 elements, not int32"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreadable_and_corrupt_files_are_errors_naming_the_file() {
    let dir = tmp_dir("bad");
    let missing = dir.join("missing.npy");
    let err = from_npy::<f64>(&missing, &[2]).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Io);
    assert!(err.to_string().contains("missing.npy"), "{err}");
    let garbage = dir.join("garbage.npy");
    std::fs::write(&garbage, b"this is not numpy").unwrap();
    let err = from_npy::<f64>(&garbage, &[2]).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Codec);
    assert!(
        err.to_string().contains("garbage.npy is not a valid .npy file"),
        "{err}"
    );
    let good = dir.join("good.npy");
    from_array(&ramp(&[50, 4]), &[10, 4]).unwrap().to_npy(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.join("cut.npy");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let err = from_npy::<f64>(&cut, &[10, 4]).unwrap_err();
    assert!(
        err.to_string().contains("cut.npy") && err.to_string().contains("the file has"),
        "{err}"
    );
    let err = from_npy::<i64>(&good, &[10, 4]).unwrap_err();
    assert!(err.to_string().contains("<f8, not i64"), "{err}");
    // a corrupt Zarr chunk is found when the block is read, and named
    let z = dir.join("z");
    from_array(&ramp(&[8, 8]), &[4, 4])
        .unwrap()
        .to_zarr(&z, ZarrCompression::Zstd(1))
        .unwrap();
    std::fs::write(z.join("c/1/0"), b"garbage").unwrap();
    let err = from_zarr::<f64>(&z, None).unwrap().compute().unwrap_err();
    assert!(err.to_string().contains(&z.display().to_string()), "{err}");
    let err = from_zarr::<f64>(dir.join("nowhere"), None).unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn numpy_files_read_here_and_ours_read_in_numpy() {
    let dir = tmp_dir("numpy");
    run_python(
        &format!(
            "{PY_RAMP}np.save(d / 'c.npy', ramp((9, 5, 4)))\n\
             np.save(d / 'f.npy', np.asfortranarray(ramp((6, 7)).astype(np.float32)))\n\
             np.save(d / 'i.npy', (ramp((11,)) * 2).astype(np.int64))\n\
             np.save(d / 'u.npy', np.arange(20, dtype=np.uint8).reshape(4, 5))\n\
             np.save(d / 'b.npy', ramp((3, 3)) > -1)\n"
        ),
        &dir,
    );
    assert_computes(
        &from_npy::<f64>(dir.join("c.npy"), &[4, 2, 3]).unwrap(),
        &ramp(&[9, 5, 4]),
    );
    assert_computes(
        &from_npy::<f32>(dir.join("f.npy"), &[4, 3]).unwrap(),
        &ramp(&[6, 7]).mapv(|v| v as f32),
    );
    assert_computes(
        &from_npy::<i64>(dir.join("i.npy"), &[4]).unwrap(),
        &ramp(&[11]).mapv(|v| (v * 2.0) as i64),
    );
    let u = ArrayD::from_shape_fn(IxDyn(&[4, 5]), |i| (i[0] * 5 + i[1]) as u8);
    assert_computes(&from_npy::<u8>(dir.join("u.npy"), &[3, 3]).unwrap(), &u);
    assert_computes(
        &from_npy::<bool>(dir.join("b.npy"), &[2, 2]).unwrap(),
        &ramp(&[3, 3]).mapv(|v| v > -1.0),
    );
    // ours, read by NumPy
    from_array(&ramp(&[12, 5]), &[5, 2])
        .unwrap()
        .to_npy(dir.join("ours.npy"))
        .unwrap();
    from_array(&ramp(&[7]).mapv(|v| v as i32), &[3])
        .unwrap()
        .to_npy(dir.join("ours_i32.npy"))
        .unwrap();
    from_array(&ramp(&[10, 3]), &[4, 3])
        .unwrap()
        .to_npy_stack(dir.join("stack"), 0)
        .unwrap();
    run_python(
        &format!(
            "{PY_RAMP}import json\n\
             a = np.load(d / 'ours.npy'); assert a.dtype == np.float64 and np.array_equal(a, ramp((12, 5))), a\n\
             b = np.load(d / 'ours_i32.npy'); assert b.dtype == np.int32 and np.array_equal(b, ramp((7,)).astype(np.int32)), b\n\
             info = json.loads((d / 'stack' / 'info.json').read_text())\n\
             parts = [np.load(d / 'stack' / f'{{i}}.npy') for i in range(len(info['chunks'][info['axis']]))]\n\
             s = np.concatenate(parts, axis=info['axis']); assert np.array_equal(s, ramp((10, 3))), s\n"
        ),
        &dir,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn zarr_python_stores_read_here_and_ours_read_in_zarr_python() {
    let dir = tmp_dir("zarrpy");
    run_python(
        &format!(
            "{PY_RAMP}import zarr\n\
             from zarr.codecs import GzipCodec\n\
             z = zarr.create_array(store=str(d / 'plain'), shape=(20, 9), chunks=(6, 4), dtype='float64', compressors=None); z[:] = ramp((20, 9))\n\
             z = zarr.create_array(store=str(d / 'zstd'), shape=(20, 9), chunks=(7, 9), dtype='int32'); z[:] = ramp((20, 9)).astype(np.int32)\n\
             z = zarr.create_array(store=str(d / 'gzip'), shape=(5, 6, 7), chunks=(2, 3, 4), dtype='float32', compressors=GzipCodec(level=4)); z[:] = ramp((5, 6, 7)).astype(np.float32)\n\
             z = zarr.create_array(store=str(d / 'flags'), shape=(10,), chunks=(3,), dtype='bool'); z[:] = ramp((10,)) > 0\n"
        ),
        &dir,
    );
    let plain = from_zarr::<f64>(dir.join("plain"), None).unwrap();
    assert_eq!(plain.chunks().axis(0), &[6, 6, 6, 2]);
    assert_computes(&plain, &ramp(&[20, 9]));
    assert_computes(
        &from_zarr::<i32>(dir.join("zstd"), None).unwrap(),
        &ramp(&[20, 9]).mapv(|v| v as i32),
    );
    assert_computes(
        &from_zarr::<f32>(dir.join("gzip"), None).unwrap(),
        &ramp(&[5, 6, 7]).mapv(|v| v as f32),
    );
    assert_computes(
        &from_zarr::<bool>(dir.join("flags"), None).unwrap(),
        &ramp(&[10]).mapv(|v| v > 0.0),
    );
    // ours, read by zarr-python
    let x = from_array(&ramp(&[15, 8]), &[4, 3]).unwrap();
    x.to_zarr(dir.join("ours-plain"), ZarrCompression::None).unwrap();
    x.to_zarr(dir.join("ours-zstd"), ZarrCompression::Zstd(3)).unwrap();
    x.astype::<i64>()
        .to_zarr(dir.join("ours-gzip"), ZarrCompression::Gzip(6))
        .unwrap();
    run_python(
        &format!(
            "{PY_RAMP}import zarr\n\
             for name in ['ours-plain', 'ours-zstd']:\n    \
                 z = zarr.open_array(str(d / name), mode='r'); assert z.chunks == (4, 3), z.chunks\n    \
                 assert z.dtype == np.float64 and np.array_equal(z[:], ramp((15, 8))), name\n\
             z = zarr.open_array(str(d / 'ours-gzip'), mode='r'); assert np.array_equal(z[:], ramp((15, 8)).astype(np.int64))\n"
        ),
        &dir,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
