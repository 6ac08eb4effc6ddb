use crate::Module;

/// Prints a module in the text form (without a banner).
pub fn print_module(module: &Module) -> String {
    format!("{module:#?}")
}
