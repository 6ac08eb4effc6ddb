// expect: 5:9 · Pooling needs an image, not a feature vector.
nnc::model! {
    model M {
        input 8
        maxpool k=2
    }
}

fn main() {}
