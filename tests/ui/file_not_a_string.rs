// expect: 2:20 · The file form takes a string literal.
nnc::model!(file = models);

fn main() {}
