// expect: 6:15 · A layer whose input size is not what the previous layer gives.
nnc::model! {
    model M {
        input 800
        dense 800 -> 700
        dense 800 -> 750
    }
}

fn main() {}
