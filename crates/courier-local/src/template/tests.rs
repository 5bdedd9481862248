use super::*;

fn parse(text: &str) -> Template {
    Template::parse(text, TemplateOptions::default()).unwrap()
}

const BASE: &str = r#"
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  StageName:
    Type: String
    Default: prod
  SmsSenderId:
    Type: String
    Default: ""
  EnablePush:
    Type: String
    Default: "false"
Conditions:
  PushOn: !Equals [!Ref EnablePush, "true"]
  PushOff: !Not [!Condition PushOn]
  Both: !And [!Condition PushOff, !Equals [!Ref StageName, prod]]
Globals:
  Function:
    Timeout: 10
    MemorySize: 256
    Environment:
      Variables:
        RUST_LOG: info
        USERS_TABLE: !Ref UsersTable
Resources:
  UsersTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
      TimeToLiveSpecification: {AttributeName: ttl, Enabled: true}
  MediaBucket:
    Type: AWS::S3::Bucket
  PushTopic:
    Type: AWS::SNS::Topic
    Condition: PushOn
  IosApp:
    Type: Custom::SnsPlatformApplication
    Properties:
      ServiceToken: !GetAtt PlatformAppFunction.Arn
      Name: !Sub "${AWS::StackName}-ios"
      Platform: APNS_SANDBOX
      Attributes:
        PlatformCredential: cred
  PlatformAppFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildMethod: rust-cargolambda, BuildProperties: {Binary: platformapp}}
    Properties:
      CodeUri: ./
      Handler: bootstrap
  RegisterAccountFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: registration
    Properties:
      CodeUri: ./
      Handler: bootstrap
      Timeout: 5
      Environment:
        Variables:
          COURIER_OPERATION: registerAccount
          RUST_LOG: debug
          TABLE_ARN: !GetAtt UsersTable.Arn
          WHERE: !Sub "${AWS::Region}/${AWS::AccountId}/${UsersTable}"
          LITERAL: !Sub "${!NotAVar}"
          SENDER: !If [PushOn, push, !Ref SmsSenderId]
          JOINED: !Join ["/", [a, !Ref StageName, !Select [1, !Split [",", "x,y,z"]]]]
          LONG: {"Fn::Sub": "${MediaBucket}.${StageName}"}
          APP: !GetAtt IosApp.Arn
          BOTH: !If [Both, yes, no]
          NOTHING: !If [PushOn, x, !Ref "AWS::NoValue"]
      Events:
        Register:
          Type: HttpApi
          Properties:
            Path: /v1/accounts
            Method: post
        Any:
          Type: HttpApi
          Properties:
            Path: /v1/devices/link-requests/{linkId}
            Method: ANY
        Fallback:
          Type: HttpApi
  ConnectFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: connections}}
    Properties:
      CodeUri: ./
      Environment:
        Variables:
          COURIER_OPERATION: connect
  AuthorizerFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: authorizer}}
    Properties:
      CodeUri: ./
  WebSocketApi:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: courier-ws
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: $request.body.action
  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref WebSocketApi
      StageName: !Ref StageName
  ConnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref WebSocketApi
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${ConnectFunction.Arn}/invocations
  Authorizer:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: !Ref WebSocketApi
      AuthorizerType: REQUEST
      AuthorizerUri: !Join ["", ["arn:aws:apigateway:", !Ref "AWS::Region", ":lambda:path/2015-03-31/functions/", !GetAtt [AuthorizerFunction, Arn], "/invocations"]]
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref WebSocketApi
      RouteKey: $connect
      AuthorizationType: CUSTOM
      AuthorizerId: !Ref Authorizer
      Target: !Join ["/", [integrations, !Ref ConnectIntegration]]
  DefaultRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref WebSocketApi
      RouteKey: $default
      RouteResponseSelectionExpression: $default
      Target: !Sub integrations/${ConnectIntegration}
"#;

#[test]
fn resolves_tags_sub_getatt_and_globals() {
    let t = parse(BASE);
    let app = t.application().unwrap();
    let f = &app.functions["RegisterAccountFunction"];
    let env = &f.environment;
    assert_eq!(f.binary, "registration");
    assert_eq!(f.timeout, Duration::from_secs(5));
    assert_eq!(f.memory_mb, 256);
    assert_eq!(env["RUST_LOG"], "debug", "function's own variable wins");
    assert_eq!(env["USERS_TABLE"], "courier-UsersTable", "globals merged");
    assert_eq!(env["COURIER_OPERATION"], "registerAccount");
    assert_eq!(
        env["TABLE_ARN"],
        "arn:aws:dynamodb:us-east-1:000000000000:table/courier-UsersTable"
    );
    assert_eq!(env["WHERE"], "us-east-1/000000000000/courier-UsersTable");
    assert_eq!(env["LITERAL"], "${NotAVar}");
    assert_eq!(env["SENDER"], "");
    assert_eq!(env["JOINED"], "a/prod/y");
    assert_eq!(env["LONG"], "courier-mediabucket.prod");
    assert_eq!(
        env["APP"],
        "arn:aws:sns:us-east-1:000000000000:app/APNS_SANDBOX/courier-ios"
    );
    assert_eq!(env["BOTH"], "yes");
    assert!(!env.contains_key("NOTHING"), "AWS::NoValue drops the key");
    assert_eq!(
        app.functions["ConnectFunction"].timeout,
        Duration::from_secs(10)
    );
}

#[test]
fn conditions_skip_resources() {
    let t = parse(BASE);
    assert_eq!(t.condition("PushOn"), Some(false));
    assert_eq!(t.condition("PushOff"), Some(true));
    let infra = t.infrastructure().unwrap();
    assert!(infra.topics.is_empty());
    assert_eq!(infra.tables.len(), 1);
    assert_eq!(infra.tables[0].ttl_attribute().as_deref(), Some("ttl"));
    assert_eq!(infra.buckets[0].name, "courier-mediabucket");
    assert_eq!(infra.platform_apps[0].name, "courier-ios");

    let mut params = BTreeMap::new();
    params.insert("EnablePush".to_string(), "true".to_string());
    let t = Template::parse(
        BASE,
        TemplateOptions {
            parameters: params,
            ..Default::default()
        },
    )
    .unwrap();
    let infra = t.infrastructure().unwrap();
    assert_eq!(infra.topics[0].name, "courier-PushTopic");
    let env = &t.application().unwrap().functions["RegisterAccountFunction"].environment;
    assert_eq!(env["SENDER"], "push");
    assert_eq!(env["NOTHING"], "x");
}

#[test]
fn physical_arn_wins() {
    let mut t = parse(BASE);
    let mut attrs = BTreeMap::new();
    attrs.insert("Arn".to_string(), "arn:moto:app".to_string());
    t.set_physical(
        "IosApp",
        Physical {
            ref_value: Some("arn:moto:app".into()),
            attrs,
        },
    );
    let app = t.application().unwrap();
    assert_eq!(
        app.functions["RegisterAccountFunction"].environment["APP"],
        "arn:moto:app"
    );
}

#[test]
fn http_routes_and_websocket() {
    let app = parse(BASE).application().unwrap();
    let keys: Vec<String> = app.http_routes.iter().map(HttpRoute::route_key).collect();
    assert!(keys.contains(&"POST /v1/accounts".to_string()));
    assert!(keys.contains(&"ANY /v1/devices/link-requests/{linkId}".to_string()));
    assert!(keys.contains(&"$default".to_string()));
    let ws = app.websocket.unwrap();
    assert_eq!(ws.stage, "prod");
    assert_eq!(ws.api_id, "websocketapi");
    assert_eq!(ws.route_selection_expression, "$request.body.action");
    let connect = &ws.routes["$connect"];
    assert_eq!(connect.function.as_deref(), Some("ConnectFunction"));
    assert_eq!(connect.authorization_type, "CUSTOM");
    assert_eq!(
        connect.authorizer_function.as_deref(),
        Some("AuthorizerFunction")
    );
    assert!(!connect.two_way);
    assert!(ws.routes["$default"].two_way);
}

#[test]
fn unresolvable_ref_names_the_path() {
    // One function F whose environment variable BAD is `value`: the application's error.
    let error_of = |value: &str| {
        let text = format!(
            r#"
Resources:
  F:
    Type: AWS::Serverless::Function
    Metadata: {{BuildProperties: {{Binary: x}}}}
    Properties:
      Environment:
        Variables:
          BAD: {value}
"#
        );
        parse(&text).application().unwrap_err().to_string()
    };
    let err = error_of("!Ref NoSuchThing");
    assert!(
        err.contains("Resources.F.Properties.Environment.Variables.BAD"),
        "{err}"
    );
    assert!(err.contains("NoSuchThing"), "{err}");

    let err = error_of(r#"!Sub "${Missing.Arn}""#);
    assert!(err.contains("Missing"), "{err}");
}

const STREAMS: &str = r#"
Resources:
  MessagesTable:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  PlainTable:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  FanOutFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: fanout}}
    Properties:
      Events:
        MessageStream:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt MessagesTable.StreamArn
            StartingPosition: TRIM_HORIZON
            BatchSize: 100
            MaximumBatchingWindowInSeconds: 0
            BisectBatchOnFunctionError: true
            MaximumRetryAttempts: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
  Other:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: other}}
  OtherMapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      EventSourceArn: !GetAtt MessagesTable.StreamArn
      FunctionName: !GetAtt Other.Arn
      StartingPosition: LATEST
      Enabled: false
"#;

#[test]
fn stream_mappings_sam_and_resource_forms() {
    let mut t = parse(STREAMS);
    let app = t.application().unwrap();
    assert_eq!(app.stream_mappings.len(), 2);
    let fan = &app.stream_mappings[0];
    assert_eq!(fan.id, "FanOutFunction.MessageStream");
    assert_eq!(fan.function, "FanOutFunction");
    assert_eq!(fan.table_name.as_deref(), Some("courier-MessagesTable"));
    assert_eq!(fan.starting_position, StartingPosition::TrimHorizon);
    assert_eq!(fan.batch_size, 100);
    assert_eq!(fan.batching_window, Duration::ZERO);
    assert!(fan.bisect_on_error && fan.report_batch_item_failures && fan.enabled);
    assert_eq!(fan.max_retry_attempts, Some(10));
    let other = &app.stream_mappings[1];
    assert_eq!(other.id, "OtherMapping");
    assert_eq!(other.function, "Other");
    assert_eq!(other.starting_position, StartingPosition::Latest);
    assert_eq!(other.max_retry_attempts, None);
    assert!(!other.enabled && !other.bisect_on_error);

    // Provisioning records the real stream ARN; the mapping then uses it.
    let real = "arn:aws:dynamodb:ddblocal:000000000000:table/courier-MessagesTable/stream/2026";
    let mut p = Physical::default();
    p.attrs.insert("StreamArn".into(), real.into());
    t.set_physical("MessagesTable", p);
    assert_eq!(t.application().unwrap().stream_mappings[0].stream_arn, real);

    let bad = STREAMS.replace(
        "!GetAtt MessagesTable.StreamArn\n            Start",
        "!GetAtt PlainTable.StreamArn\n            Start",
    );
    let err = parse(&bad).application().unwrap_err().to_string();
    assert!(
        err.contains("PlainTable has no StreamSpecification"),
        "{err}"
    );
    let bad = STREAMS.replace("TRIM_HORIZON", "AT_TIMESTAMP");
    let err = parse(&bad).application().unwrap_err().to_string();
    assert!(err.contains("StartingPosition"), "{err}");
}

#[test]
fn only_tables_whose_stream_is_read_keep_their_stream_locally() {
    let text = r#"
Resources:
  MessagesTable:
    Type: AWS::DynamoDB::GlobalTable
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_AND_OLD_IMAGES}
  UsersTable:
    Type: AWS::DynamoDB::GlobalTable
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_AND_OLD_IMAGES}
  AuditTable:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  StandbyTable:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  Mapping:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: f
      EventSourceArn: !If
        - Never
        - !GetAtt [MessagesTable, StreamArn]
        - !Sub "arn:aws:dynamodb:x:y:table/${AWS::StackName}-StandbyTable/stream/label"
  Policy:
    Type: AWS::IAM::Policy
    Properties:
      Resource: !Sub "${AuditTable.StreamArn}"
      Other: !GetAtt UsersTable.Arn
"#;
    let t = parse(text);
    let read: Vec<String> = t.read_streams().into_iter().collect();
    assert_eq!(read, ["AuditTable", "MessagesTable", "StandbyTable"]);
    let infra = t.infrastructure().unwrap();
    let streamed: Vec<&str> = infra
        .tables
        .iter()
        .filter(|t| t.has_stream())
        .map(|t| t.logical_id.as_str())
        .collect();
    assert_eq!(streamed, ["AuditTable", "MessagesTable", "StandbyTable"]);
    let users = infra
        .tables
        .iter()
        .find(|t| t.logical_id == "UsersTable")
        .unwrap();
    assert!(users.properties.get("KeySchema").is_some());
}

#[test]
fn unknown_parameter_override_is_an_error() {
    let mut params = BTreeMap::new();
    params.insert("Nope".to_string(), "1".to_string());
    let err = Template::parse(
        BASE,
        TemplateOptions {
            parameters: params,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("Nope"));
}
