// expect: 5:9 · A misspelt statement keyword.
nnc::model! {
    model M {
        input 8
        dnese 8 -> 4
    }
}

fn main() {}
