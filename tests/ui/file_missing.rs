// expect: 2:20 · The file form names a file that is not there.
nnc::model!(file = "models/no_such_model.nn");

fn main() {}
