//! Grouping: `foldby`, the fast path, and `groupby`, through a hash shuffle.
//!
//! `foldby` never moves a group: each partition folds its records into one
//! accumulator per key, and the tree reduction merges accumulators of equal
//! keys. Only one value per key and partition travels. Prefer it whenever
//! the groups are only reduced (a sum, a count, a max per key), as Dask's
//! documentation says of its own `foldby`.
//!
//! `groupby` hands out whole groups, so every record must reach the one
//! partition that holds its key: a *tasks shuffle* in the graph.
//!
//! ```text
//!   input 0 ──split──▶ [bucket 0 | bucket 1 | … | bucket m-1] ─┐
//!   input 1 ──split──▶ [bucket 0 | bucket 1 | … | bucket m-1] ─┼─▶ output j = bucket j of every input
//!   …                                                           ┘
//! ```
//!
//! A record goes to bucket `hash(key) % m`, with a hasher whose keys are fixed
//! (SipHash with zero keys), so every process of one build puts a key in the
//! same bucket. Output partition `j` reads bucket `j` of every split, in
//! input order, so each group's records keep their original order. Every
//! output task reads every split (`n × m` edges): fine for thousands of
//! partitions; a multi-stage shuffle (Dask's `shuffle_group` rounds) is the
//! next step when that stops being fine.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use blockwise_core::{Error, Input, Key, Layer, LayerBody, Name, Task, Tokenizer, Value};

use crate::bag::{Bag, u64_arg};
use crate::partition::{Element, Partition, partition_of};
use crate::reduce::{OrderedMap, Reduction, feed_value};
use crate::stage::{BagOp, FnName, drive, extend_fns, extend_label, feed_fn};

/// The shuffle bucket of a key among `buckets`: the same in every process of
/// one build.
fn bucket_of<K: Hash>(key: &K, buckets: usize) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % buckets as u64) as usize
}

impl<T: Element> Bag<T> {
    /// Group-wise reduction without moving groups (Dask's `foldby`): records
    /// are grouped by `key`, each group is folded from `initial` with
    /// `binop` within every partition, and the partial results of a key are
    /// merged with `combine`. A one-partition bag of `(key, result)` in
    /// first-appearance order of the keys.
    ///
    /// For a result independent of the partitioning, `combine` must be
    /// associative and `initial` neutral for it.
    pub fn foldby<K, A, FK, B, C>(&self, key: FK, initial: A, binop: B, combine: C) -> Bag<(K, A)>
    where
        K: Element + Eq + Hash,
        A: Element,
        FK: Fn(&T) -> K + Send + Sync + 'static,
        B: Fn(A, T) -> A + Send + Sync + 'static,
        C: Fn(A, A) -> A + Send + Sync + 'static,
    {
        let mut tok = Tokenizer::new();
        tok.str("foldby");
        feed_fn::<FK>(&mut tok);
        feed_fn::<B>(&mut tok);
        feed_fn::<C>(&mut tok);
        feed_value(&mut tok, &initial);
        let finish = |acc: OrderedMap<K, Option<A>>| -> Vec<(K, A)> {
            acc.into_vec()
                .into_iter()
                .filter_map(|(k, a)| a.map(|a| (k, a)))
                .collect()
        };
        self.small_bag(Reduction {
            prefix: "foldby",
            token: tok.finish(),
            fns: vec![FnName::of::<FK>(), FnName::of::<B>(), FnName::of::<C>()],
            part: Box::new(move |stage, args| {
                let mut acc: OrderedMap<K, Option<A>> = OrderedMap::new();
                drive(stage, args, &mut |x| {
                    let slot = acc.entry(key(&x), || Some(initial.clone()));
                    if let Some(a) = slot.take() {
                        *slot = Some(binop(a, x));
                    }
                    Ok(())
                })?;
                Ok(finish(acc))
            }),
            combine: Arc::new(move |parts| {
                let mut acc: OrderedMap<K, Option<A>> = OrderedMap::new();
                for (k, a) in parts.into_iter().flatten() {
                    acc.upsert(k, Some(a), |old, new| {
                        if let (Some(o), Some(n)) = (old.take(), new) {
                            *old = Some(combine(o, n));
                        }
                    });
                }
                Ok(finish(acc))
            }),
            finish: Box::new(|pairs: Vec<(K, A)>| Ok(Arc::new(Partition::new(pairs)) as Value)),
            portable: None,
        })
    }

    /// Full groups: `(key, records)` with the records of each key in their
    /// original order, through a hash shuffle into as many partitions as
    /// this bag has (see [`Bag::groupby_with`]). Within an output partition,
    /// groups come in first-appearance order.
    pub fn groupby<K, FK>(&self, key: FK) -> Bag<(K, Vec<T>)>
    where
        K: Element + Eq + Hash,
        FK: Fn(&T) -> K + Send + Sync + 'static,
    {
        self.groupby_with(key, self.npartitions())
    }

    /// [`Bag::groupby`] into `npartitions` output partitions (0 is taken as 1).
    pub fn groupby_with<K, FK>(&self, key: FK, npartitions: usize) -> Bag<(K, Vec<T>)>
    where
        K: Element + Eq + Hash,
        FK: Fn(&T) -> K + Send + Sync + 'static,
    {
        let m = npartitions.max(1);
        let src = &self.source;
        let key = Arc::new(key);
        let mut tok = Tokenizer::new();
        tok.str("groupby").u64(src.token).u64(m as u64);
        feed_fn::<FK>(&mut tok);
        let token = tok.finish();
        let fns = extend_fns(&src.fns, &[FnName::of::<FK>()]);
        let element = std::any::type_name::<T>();

        let split_name = Name::new(&format!("groupby-split-{token:016x}"));
        let stage = src.stage.clone();
        let k1 = key.clone();
        let split = BagOp::build(
            "blockwise.bag.shuffle-split",
            extend_label(&src.label, "groupby-split").to_string(),
            fns,
            element,
            move |args| {
                let mut buckets: Vec<Vec<T>> = (0..m).map(|_| Vec::new()).collect();
                drive(&stage, args, &mut |x| {
                    buckets[bucket_of(&k1(&x), m)].push(x);
                    Ok(())
                })?;
                Ok(Arc::new(Partition::new(buckets)) as Value)
            },
        );
        let tasks = src
            .inputs
            .iter()
            .enumerate()
            .map(|(i, inputs)| {
                (
                    Key::new(split_name.clone(), &[i as u32]),
                    Task::new(split.clone(), inputs.clone()),
                )
            })
            .collect();
        let split_layer = Layer::new(split_name, src.deps.to_vec(), LayerBody::Tasks(tasks));

        let name = Name::new(&format!("groupby-{token:016x}"));
        let group = BagOp::build(
            "blockwise.bag.shuffle-group",
            "groupby",
            Arc::from(vec![FnName::of::<FK>()]),
            element,
            move |args| {
                let (_, splits) = args
                    .split_last()
                    .ok_or_else(|| Error::graph("a groupby task without its bucket index"))?;
                let j = u64_arg(args, args.len() - 1)? as usize;
                let mut groups: OrderedMap<K, Vec<T>> = OrderedMap::new();
                for split in splits {
                    let buckets = partition_of::<Vec<T>>(split)?;
                    let bucket = buckets
                        .get(j)
                        .ok_or_else(|| Error::graph(format!("a shuffle split has no bucket {j}")))?;
                    for x in bucket {
                        groups.entry(key(x), Vec::new).push(x.clone());
                    }
                }
                Ok(Arc::new(Partition::new(groups.into_vec())) as Value)
            },
        );
        let split_keys = split_layer.keys();
        let tasks = (0..m)
            .map(|j| {
                let mut inputs: Vec<Input> = split_keys.iter().cloned().map(Input::Key).collect();
                inputs.push(Input::Literal(Arc::new(j as u64)));
                (Key::new(name.clone(), &[j as u32]), Task::new(group.clone(), inputs))
            })
            .collect();
        let layer = Layer::new(name, vec![split_layer], LayerBody::Tasks(tasks));
        Bag::from_layer(layer, m, token, self.split_every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_in_range() {
        for k in 0..1000u64 {
            let b = bucket_of(&k, 7);
            assert!(b < 7);
            assert_eq!(b, bucket_of(&k, 7));
        }
        assert_eq!(bucket_of(&"x", 1), 0);
    }
}
