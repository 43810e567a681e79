"""A CDK app with a Lambda Managed Instances capacity provider and a Python function published
through an alias, synthesized into ../cdk.out (and ../cdk.out.v2 with another GREETING) by
`python app.py` (see ../README.md). fleetfn deploys the synthesized template; this app is kept to
show where the fixture came from and to regenerate it."""

import os
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_

HERE = Path(__file__).resolve().parent


class LmiStack(cdk.Stack):
    def __init__(self, scope, construct_id: str, greeting: str, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        subnets = [ec2.Subnet.from_subnet_id(self, f"Subnet{z}", f"subnet-{z}") for z in "abc"]
        group = ec2.SecurityGroup.from_security_group_id(self, "Group", "sg-0123456789abcdef0")
        provider = lambda_.CapacityProvider(self, "CapacityProvider", subnets=subnets,
                                            security_groups=[group])
        fn = lambda_.Function(
            self, "Greeter",
            runtime=lambda_.Runtime.PYTHON_3_13,
            handler="index.handler",
            code=lambda_.Code.from_asset(str(HERE / "lambda")),
            memory_size=2048,
            timeout=cdk.Duration.seconds(30),
            environment={"GREETING": greeting, "STAGE": "cdk"},
        )
        provider.add_function(fn, per_execution_environment_max_concurrency=8)
        alias = lambda_.Alias(self, "Live", alias_name="live", version=fn.current_version)
        cdk.CfnOutput(self, "FunctionName", value=fn.function_name)
        cdk.CfnOutput(self, "AliasArn", value=alias.function_arn)


def synth(outdir: Path, greeting: str) -> None:
    app = cdk.App(outdir=str(outdir))
    LmiStack(app, "LmiStack", greeting=greeting)
    app.synth()


if __name__ == "__main__":
    synth(HERE.parent / "cdk.out", os.environ.get("GREETING", "hello from cdk"))
    synth(HERE.parent / "cdk.out.v2", "howdy from cdk")
