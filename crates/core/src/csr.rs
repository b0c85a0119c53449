//! Compressed adjacency lists over dense task ids (`u32`), the shape every
//! graph pass and executor works on: `row(i)` is a slice, no per-task `Vec`.

/// Adjacency lists in compressed sparse row form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Csr {
    offsets: Vec<u32>,
    items: Vec<u32>,
}

impl Csr {
    /// Builds from one list per row.
    pub fn from_rows<I, R>(rows: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: IntoIterator<Item = u32>,
    {
        let mut offsets = vec![0u32];
        let mut items = Vec::new();
        for row in rows {
            items.extend(row);
            offsets.push(items.len() as u32);
        }
        Csr { offsets, items }
    }

    /// Builds from offsets (`rows + 1` of them, starting at 0, never
    /// decreasing, the last equal to `items.len()`) and the items.
    pub fn from_offsets(offsets: Vec<u32>, items: Vec<u32>) -> Self {
        debug_assert_eq!(offsets.first(), Some(&0));
        debug_assert_eq!(offsets.last().map(|&o| o as usize), Some(items.len()));
        Csr { offsets, items }
    }

    /// Builds from `(row, item)` edges over `rows` rows, keeping edge order within a row.
    pub fn from_edges(rows: usize, edges: &[(u32, u32)]) -> Self {
        let mut counts = vec![0u32; rows + 1];
        for &(r, _) in edges {
            counts[r as usize + 1] += 1;
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let offsets = counts.clone();
        let mut fill = counts;
        let mut items = vec![0u32; edges.len()];
        for &(r, it) in edges {
            items[fill[r as usize] as usize] = it;
            fill[r as usize] += 1;
        }
        Csr { offsets, items }
    }

    /// The reverse relation: `transpose().row(j)` lists every `i` with `j` in `row(i)`.
    pub fn transpose(&self) -> Csr {
        let rows = self.len();
        let mut counts = vec![0u32; rows + 1];
        for &it in &self.items {
            counts[it as usize + 1] += 1;
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let offsets = counts.clone();
        let mut fill = counts;
        let mut items = vec![0u32; self.items.len()];
        for r in 0..rows {
            for &it in self.row(r as u32) {
                items[fill[it as usize] as usize] = r as u32;
                fill[it as usize] += 1;
            }
        }
        Csr { offsets, items }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items of row `i`.
    pub fn row(&self, i: u32) -> &[u32] {
        let (a, b) = (self.offsets[i as usize] as usize, self.offsets[i as usize + 1] as usize);
        &self.items[a..b]
    }

    /// Total number of items (edges).
    pub fn edges(&self) -> usize {
        self.items.len()
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        (self.offsets.capacity() + self.items.capacity()) * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_edges_and_transpose_agree() {
        let a = Csr::from_rows(vec![vec![1, 2], vec![2], vec![]]);
        let b = Csr::from_edges(3, &[(0, 1), (0, 2), (1, 2)]);
        assert_eq!(a, b);
        let t = a.transpose();
        assert_eq!(t.row(0), &[] as &[u32]);
        assert_eq!(t.row(1), &[0]);
        assert_eq!(t.row(2), &[0, 1]);
        assert_eq!(t.transpose(), a);
    }
}
