// expect: 5:22 · An option the statement does not take.
nnc::model! {
    model M {
        input 8
        dense 8 -> 4 actt=relu
    }
}

fn main() {}
