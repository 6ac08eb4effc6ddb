// expect: 5:22 · A syntax error: the arrow has no target size.
nnc::model! {
    model M {
        input 800
        dense 800 -> act=relu
    }
}

fn main() {}
