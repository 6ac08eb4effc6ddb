// expect: 5:9 · A residual block that changes the shape it adds back to.
nnc::model! {
    model M {
        input 64
        residual {
            dense 64 -> 32 act=relu
        }
    }
}

fn main() {}
