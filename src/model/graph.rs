//! Skeleton layouts and the ST-GCN "spatial" partition graph (paper §3.1, ST-GCN
//! encoder). Pure Rust, no libtorch: a [`Layout`] names the joints, bones, centre and
//! mirror order; [`Graph::spatial`] builds the `(K=3, V, V)` adjacency stack.

/// A skeleton layout: everything about the joint set that the rest of pstl may use.
/// Nothing outside this file assumes 25 joints.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Short name stored in HDF5 files (`ntu25`).
    pub name: &'static str,
    /// Number of joints `V`.
    pub num_joints: usize,
    /// Centre joint of the spatial partition (0-based).
    pub center: usize,
    /// Bones as 0-based `(child, parent)` pairs; a self pair means "no parent" (bone 0).
    pub bones: Vec<(usize, usize)>,
    /// Left/right mirror permutation used by the flip augmentation.
    pub flip_order: Vec<usize>,
    /// Named body parts for the practical (missing-joint) evaluation.
    pub parts: Vec<(&'static str, Vec<usize>)>,
}

impl Layout {
    /// The NTU RGB+D 25-joint layout (method file §1).
    pub fn ntu25() -> Self {
        const BONES_1BASED: [(usize, usize); 25] = [
            (1, 2),
            (2, 21),
            (3, 21),
            (4, 3),
            (5, 21),
            (6, 5),
            (7, 6),
            (8, 7),
            (9, 21),
            (10, 9),
            (11, 10),
            (12, 11),
            (13, 1),
            (14, 13),
            (15, 14),
            (16, 15),
            (17, 1),
            (18, 17),
            (19, 18),
            (20, 19),
            (21, 21),
            (22, 23),
            (23, 8),
            (24, 25),
            (25, 12),
        ];
        Layout {
            name: "ntu25",
            num_joints: 25,
            center: 20,
            bones: BONES_1BASED.iter().map(|&(c, p)| (c - 1, p - 1)).collect(),
            flip_order: vec![
                0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15, 20, 23, 24,
                21, 22,
            ],
            parts: vec![
                ("left_arm", vec![4, 5, 6, 7, 21, 22]),
                ("right_arm", vec![8, 9, 10, 11, 23, 24]),
                ("left_leg", vec![12, 13, 14, 15]),
                ("right_leg", vec![16, 17, 18, 19]),
                ("trunk", vec![0, 1, 2, 3, 20]),
            ],
        }
    }

    /// Look a layout up by the name stored in a data file.
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "ntu25" => Some(Self::ntu25()),
            _ => None,
        }
    }

    /// Undirected graph edges (bones without the self pair).
    pub fn edges(&self) -> Vec<(usize, usize)> {
        self.bones.iter().copied().filter(|(c, p)| c != p).collect()
    }

    /// Number of neighbours of every joint: the CSM sampling weights (method file §4).
    pub fn degrees(&self) -> Vec<usize> {
        let mut deg = vec![0; self.num_joints];
        for (a, b) in self.edges() {
            deg[a] += 1;
            deg[b] += 1;
        }
        deg
    }
}

/// The ST-GCN adjacency stack for one layout.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Number of joints `V`.
    pub num_joints: usize,
    /// `K * V * V` row-major values, `K = 3` partitions (root, close, further).
    pub a: Vec<f32>,
}

impl Graph {
    /// Number of partitions of the spatial strategy.
    pub const K: usize = 3;

    /// ST-GCN "spatial" partition with `max_hop = 1` and column normalisation.
    pub fn spatial(layout: &Layout) -> Self {
        let v = layout.num_joints;
        const INF: usize = usize::MAX;
        // Hop distance truncated at max_hop = 1, exactly as ST-GCN's get_hop_distance.
        let mut hop = vec![INF; v * v];
        for i in 0..v {
            hop[i * v + i] = 0;
        }
        for (a, b) in layout.edges() {
            hop[a * v + b] = 1;
            hop[b * v + a] = 1;
        }
        let adj: Vec<f64> = hop
            .iter()
            .map(|&h| if h <= 1 { 1.0 } else { 0.0 })
            .collect();
        // AD = A · D^-1 with D_jj the column sums.
        let mut ad = vec![0.0f64; v * v];
        for j in 0..v {
            let col: f64 = (0..v).map(|i| adj[i * v + j]).sum();
            if col > 0.0 {
                for i in 0..v {
                    ad[i * v + j] = adj[i * v + j] / col;
                }
            }
        }
        let c = layout.center;
        let mut out = vec![0.0f32; Self::K * v * v];
        for hop_level in [0usize, 1] {
            for i in 0..v {
                for j in 0..v {
                    if hop[j * v + i] != hop_level {
                        continue;
                    }
                    let (dj, di) = (hop[j * v + c], hop[i * v + c]);
                    let val = ad[j * v + i] as f32;
                    let k = if hop_level == 0 || dj == di {
                        if hop_level == 0 {
                            0
                        } else {
                            1
                        }
                    } else if dj > di {
                        1 // close
                    } else {
                        2 // further
                    };
                    out[k * v * v + j * v + i] += val;
                }
            }
        }
        Graph {
            num_joints: v,
            a: out,
        }
    }
}

/// Several body parts removed at once: `"left_arm,right_leg"` -> the name
/// `left_arm+right_leg` and the union of their joints (NTU anatomy names, as
/// `Layout::parts`). Unknown names are errors listing the known ones.
pub fn part_set(layout: &Layout, spec: &str) -> anyhow::Result<(String, Vec<usize>)> {
    let mut names = Vec::new();
    let mut joints = Vec::new();
    for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((_, js)) = layout.parts.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = layout.parts.iter().map(|(n, _)| *n).collect();
            anyhow::bail!(
                "eval.robust_part_sets / --parts: unknown body part `{name}` in `{spec}` (known: {})",
                known.join(", ")
            );
        };
        if !names.contains(&name) {
            names.push(name);
            joints.extend_from_slice(js);
        }
    }
    if names.is_empty() {
        anyhow::bail!("eval.robust_part_sets / --parts: `{spec}` names no body part");
    }
    Ok((names.join("+"), joints))
}
