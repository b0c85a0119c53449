//! A quick tour of blockwise on the default local scheduler (threads, one
//! per core).
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example tour
//! ```
//!
//! It shows lazy `delayed` calls building a graph, `compute` running it on
//! every core, `persist` keeping results for reuse, what a failing task
//! looks like, and the three collections: a chunked array, a partitioned data
//! frame read from CSV files, and a bag of JSON records.

use blockwise::prelude::*;

/// A registered task: it could run on a cluster worker too.
#[blockwise::task]
fn inc(x: i64) -> i64 {
    x + 1
}

#[blockwise::task]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[blockwise::task]
fn total(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

#[blockwise::task]
fn checked_div(a: i64, b: i64) -> Result<i64, String> {
    if b == 0 {
        Err(format!("cannot divide {a} by zero"))
    } else {
        Ok(a / b)
    }
}

fn main() -> blockwise::Result<()> {
    blockwise::init();
    let scheduler = Scheduler::from_config()?;
    println!("blockwise tour — scheduler: {scheduler:?}\n");

    // 1. delayed: ordinary functions, called lazily.
    let a = delayed(inc).call(1);
    let b = delayed(inc).call(2);
    let c = delayed(add).call(&a, &b);
    println!(
        "1. delayed: inc(1) + inc(2) = {}   (graph of {} tasks)",
        c.compute()?,
        c.graph().len()
    );

    // 2. A tree reduction of 100,000 tiny tasks, fan-in 100.
    let n = 100_000i64;
    let start = std::time::Instant::now();
    let mut level: Vec<Delayed<i64>> = (0..n).map(|i| delayed(inc).call(i)).collect();
    while level.len() > 1 {
        level = level.chunks(100).map(|c| delayed(total).call(c.to_vec())).collect();
    }
    let root = level.pop().expect("one root");
    let built = start.elapsed();
    let start = std::time::Instant::now();
    let sum = root.compute()?;
    let ran = start.elapsed();
    assert_eq!(sum, n * (n + 1) / 2);
    println!(
        "2. sum of inc(i) for i < {n}: {sum}   (built in {:.3} s, computed in {:.3} s: {:.0} tasks/s)",
        built.as_secs_f64(),
        ran.as_secs_f64(),
        root.graph().len() as f64 / ran.as_secs_f64()
    );

    // 3. persist: compute once, reuse in later graphs.
    let kept = root.persist()?;
    let doubled = delayed(add).call(&kept, &kept);
    println!("3. persisted sum reused: 2 × sum = {}", doubled.compute()?);

    // 4. A failing task names its key and the cause; nothing hangs.
    let bad = delayed(checked_div).call(&c, 0);
    match bad.compute() {
        Ok(v) => println!("4. unexpected success: {v}"),
        Err(e) => println!("4. a failing task reports itself:\n   {e}"),
    }

    arrays()?;
    frames()?;
    bags()?;
    Ok(())
}

/// 5. Arrays: a 4,000 × 4,000 random array in 1,000 × 1,000 chunks, its
///    column means, and a small linear-algebra expression.
fn arrays() -> blockwise::Result<()> {
    use blockwise::array::{TryCompute, random};
    let start = std::time::Instant::now();
    let x = random::uniform(&[4_000, 4_000], &[1_000, 1_000], 42)?;
    let means = x.mean_axis(0).compute()?;
    println!(
        "5. array: {} column means of a 4,000 × 4,000 uniform array (16 chunks), average {:.4}, in {:.3} s",
        means.len(),
        means.mean().unwrap_or(f64::NAN),
        start.elapsed().as_secs_f64()
    );
    let spread = x.sub(0.5)?.std().compute()?; // a 0-d ndarray
    println!(
        "   std of x − 0.5 over all 16 million values: {:.4} (1/√12 ≈ 0.2887)",
        spread.sum()
    );
    Ok(())
}

/// 6. Data frames: three CSV files written here, read as one frame, grouped.
fn frames() -> blockwise::Result<()> {
    use blockwise::frame::polars::prelude::{col, lit};
    let dir = std::env::temp_dir().join(format!("blockwise-tour-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| io_error(format!("creating {}", dir.display()), e))?;
    for part in 0..3 {
        let mut text = String::from("id,category,value\n");
        for i in 0..10_000 {
            let id = part * 10_000 + i;
            text.push_str(&format!("{id},{},{}\n", ["a", "b", "c", "d"][id % 4], id % 97));
        }
        let path = dir.join(format!("data_{part}.csv"));
        std::fs::write(&path, text).map_err(|e| io_error(format!("writing {}", path.display()), e))?;
    }
    let df = blockwise::frame::read_csv(dir.join("data_*.csv").to_string_lossy().as_ref())?;
    let means = df.groupby(["category"]).col("value").mean().compute()?;
    println!(
        "6. frame: {} files, {} partitions, columns {:?}; mean value per category:\n{means}",
        3,
        df.npartitions()?,
        df.columns()?
    );
    let big = df.filter(col("value").gt(lit(90))).len()?;
    println!("   rows with value > 90: {big}");
    std::fs::remove_dir_all(&dir).map_err(|e| io_error(format!("removing {}", dir.display()), e))?;
    Ok(())
}

/// 7. Bags: records that are not a table — word frequencies over lines.
fn bags() -> blockwise::Result<()> {
    let lines = [
        "the quick brown fox",
        "jumps over the lazy dog",
        "the dog sleeps",
        "a fox and a dog",
    ];
    let top = blockwise::bag::from_sequence(lines.iter().map(|s| s.to_string()), 2)
        .flat_map(|line: String| line.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .frequencies()
        .topk(3, |(_, n): &(String, usize)| *n)
        .compute()?;
    println!("7. bag: the three most frequent words: {top:?}");
    Ok(())
}

fn io_error(what: String, e: std::io::Error) -> blockwise::Error {
    blockwise::Error::new(blockwise::ErrorKind::Io, format!("{what}: {e}"))
}
