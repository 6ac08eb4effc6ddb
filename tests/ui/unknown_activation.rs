// expect: 5:26 · A misspelt activation, with a did-you-mean.
nnc::model! {
    model M {
        input 8
        dense 8 -> 4 act=reul
    }
}

fn main() {}
