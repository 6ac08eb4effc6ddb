// expect: 5:30 · A dropout probability outside [0, 1).
nnc::model! {
    model M {
        input 8
        dense 8 -> 4 dropout=1.5
    }
}

fn main() {}
