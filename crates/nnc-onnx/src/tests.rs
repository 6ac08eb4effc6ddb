use super::*;
use nnc_ir::text::parse_module;

const MLP: &str = "model Big

param @layer0.weight: f32[4,8] weight = init he_normal fan_in=8 fan_out=4 normal(mean=0, std=0.5)
param @layer0.bias: f32[4] bias = init zeros constant(value=0)

func @infer(%0: f32[N,8]) -> f32[N,4] {
  %1: f32[N,4] = linear[layer0] %0, @layer0.weight, @layer0.bias epilogue(relu) loc(3:3)
  return %1
}
";

fn zeros(name: &str) -> Option<TensorData<'static>> {
    match name {
        "layer0.weight" => Some(TensorData {
            shape: &[4, 8],
            data: &[0.0; 32],
        }),
        "layer0.bias" => Some(TensorData {
            shape: &[4],
            data: &[0.0; 4],
        }),
        _ => None,
    }
}

#[test]
fn parameters_past_the_limit_are_refused_before_anything_is_encoded() {
    let module = parse_module(MLP).unwrap();
    let zeros = |name: &str| zeros(name);
    // 32 + 4 floats: 144 bytes.
    assert!(export_within(&module, &zeros, 144).is_ok());
    let err = export_within(&module, &zeros, 143).unwrap_err();
    assert_eq!(
        err,
        ExportError::TooLarge {
            bytes: 144,
            largest: "layer0.weight".into(),
            largest_bytes: 128
        }
    );
    assert!(err.to_string().contains("external data"), "{err}");
}
