//! The one list of passes: names, summaries, modes and entry points. `nnc
//! passes` prints it; `--passes a,b` and `--after NAME` look names up here;
//! the default pipelines are data, not code (tract's `declutter()` list, MLIR's
//! `Passes.td`).

use crate::{
    dce, dce_backward, drop_redundant_bias, eliminate_dropout, fold_batchnorm, fuse_activation,
    fuse_activation_backward, fuse_pool, fuse_residual,
};
use nnc_ir::{Mode, Module};

/// One pass as the registry lists it.
#[derive(Debug)]
pub struct PassInfo {
    /// The kebab-case name users type: `fold-batchnorm`.
    pub name: &'static str,
    /// One line for `nnc passes`.
    pub summary: &'static str,
    /// The modes whose function the pass may run on.
    pub modes: &'static [Mode],
    /// The entry point: rewrites the function of that mode; true if anything
    /// changed.
    pub run: fn(&mut Module, Mode) -> bool,
}

/// Every pass, in the order `nnc passes` lists them.
pub static PASSES: &[PassInfo] = &[
    PassInfo {
        name: "eliminate-dropout",
        summary: "remove dropout, alpha dropout and dropblock, and clear dropconnect (identities at inference)",
        modes: &[Mode::Infer],
        run: eliminate_dropout,
    },
    PassInfo {
        name: "fold-batchnorm",
        summary: "fold batch norm into the dense or conv before or after it, else into a per-channel affine",
        modes: &[Mode::Infer],
        run: fold_batchnorm,
    },
    PassInfo {
        name: "fuse-activation",
        summary: "move affines and element-wise activations after a dense or conv into its epilogue",
        modes: &[Mode::Infer],
        run: fuse_activation,
    },
    PassInfo {
        name: "fuse-residual",
        summary: "move the add that closes a residual block into the conv before it",
        modes: &[Mode::Infer],
        run: fuse_residual,
    },
    PassInfo {
        name: "fuse-pool",
        summary: "move a max pool with kernel = stride and no padding into the conv before it",
        modes: &[Mode::Infer],
        run: fuse_pool,
    },
    PassInfo {
        name: "drop-redundant-bias",
        summary: "remove a bias that the batch norm right after it cancels",
        modes: &[Mode::Train, Mode::Infer],
        run: drop_redundant_bias,
    },
    PassInfo {
        name: "dce",
        summary: "remove unused ops, values and parameters, and renumber",
        modes: &[Mode::Train, Mode::Infer],
        run: dce,
    },
    PassInfo {
        name: "fuse-activation-backward",
        summary: "(backward) apply an activation's derivative in the dX product of the dense VJP before it",
        modes: &[Mode::Train],
        run: fuse_activation_backward,
    },
    PassInfo {
        name: "dce-backward",
        summary: "(backward) remove unread gradients, and what the train function saves only for them",
        modes: &[Mode::Train],
        run: dce_backward,
    },
];

/// The pass with this name.
pub fn lookup(name: &str) -> Option<&'static PassInfo> {
    PASSES.iter().find(|p| p.name == name)
}

/// The default pipeline of a mode, by pass name, in order.
pub fn pipeline(mode: Mode) -> &'static [&'static str] {
    match mode {
        // fuse-activation again: the ReLU after a residual's sum; then
        // a pool closes the epilogue.
        Mode::Infer => &[
            "eliminate-dropout",
            "fold-batchnorm",
            "fuse-activation",
            "fuse-residual",
            "fuse-activation",
            "fuse-pool",
            "dce",
        ],
        Mode::Train => &["drop-redundant-bias", "dce"],
    }
}

/// The pipeline over the backward function, run after the grad stage.
pub fn backward_pipeline() -> &'static [&'static str] {
    &["fuse-activation-backward", "dce-backward"]
}

impl PassInfo {
    /// True if the pass may run on the function of `mode`.
    pub fn runs_in(&self, mode: Mode) -> bool {
        self.modes.contains(&mode)
    }
}
