// expect: 5:27 · An initialiser scheme that does not exist.
nnc::model! {
    model M {
        input 8
        dense 8 -> 4 init=hee act=relu
    }
}

fn main() {}
