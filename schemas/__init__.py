"""Data the hub serves and validates against: the OpenAPI document, edXML XSDs, the SOAP WSDL."""

if __name__ != "lgsp.schemas":
    raise ImportError(f"import lgsp.schemas, not {__name__}: a second name would load every module twice")
