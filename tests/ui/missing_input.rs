// expect: 3:11 · A model without its input statement.
nnc::model! {
    model NoInput {
        dense 8 -> 4
    }
}

fn main() {}
