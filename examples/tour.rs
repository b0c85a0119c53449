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
//! every core, `persist` keeping results for reuse, and what a failing task
//! looks like.

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
    if b == 0 { Err(format!("cannot divide {a} by zero")) } else { Ok(a / b) }
}

fn main() -> blockwise::Result<()> {
    blockwise::init();
    let scheduler = Scheduler::from_config()?;
    println!("blockwise tour — scheduler: {scheduler:?}\n");

    // 1. delayed: ordinary functions, called lazily.
    let a = delayed(inc).call(1);
    let b = delayed(inc).call(2);
    let c = delayed(add).call(&a, &b);
    println!("1. delayed: inc(1) + inc(2) = {}   (graph of {} tasks)", c.compute()?, c.graph().len());

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
    Ok(())
}
