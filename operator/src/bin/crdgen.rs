//! Prints the `KafkaGateway` CustomResourceDefinition as YAML (`cargo run --bin crdgen > crds/kafkagateway.yaml`).

fn main() -> anyhow::Result<()> {
    #[allow(clippy::print_stdout)]
    {
        print!("{}", kafka_gateway_operator::crd::crd_yaml()?);
    }
    Ok(())
}
