// expect: 5:31 · The same option twice.
nnc::model! {
    model M {
        input 8
        dense 8 -> 4 act=relu act=tanh
    }
}

fn main() {}
