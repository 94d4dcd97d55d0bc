"""wsdeploy.training."""
