// Azure Monitor alerts for TokenRefresh, as code: four scheduled query rules on the Function app's Application Insights.
// Deploy into the resource group of the Application Insights resource (docs/telemetry.md):
//   az deployment group create -g RESOURCE_GROUP --template-file deploy/alerts.bicep \
//     --parameters appInsightsName=APP_INSIGHTS_NAME actionGroupId=ACTION_GROUP_RESOURCE_ID
// Each query counts with sum(itemCount), so it stays right if sampling is ever turned on.

@description('The Application Insights resource the Function app sends to (APPLICATIONINSIGHTS_CONNECTION_STRING).')
param appInsightsName string

@description('Resource ID of the action group to notify (email, SMS, webhook, ...).')
param actionGroupId string

@description('Where the rules live; the Application Insights resource\'s region by default.')
param location string = resourceGroup().location

@description('The Function app\'s cloud_RoleName: OTEL_SERVICE_NAME if set, else the app\'s name. Empty: any role.')
param roleName string = ''

@description('Re-authorisations rising: fire when this many more accounts need their user than an hour before.')
param reauthRise int = 10

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

var role = empty(roleName) ? '' : '| where cloud_RoleName == "${roleName}"\n'

var rules = [
  {
    name: 'tokenrefresh-cycle-failed'
    displayName: 'TokenRefresh: a cycle failed'
    description: 'A refresh cycle could not run (its summary is logged at Error): the database, a table or the settings. The host retries it after a minute.'
    severity: 1
    frequency: 'PT5M'
    window: 'PT5M'
    query: 'traces\n${role}| where tostring(customDimensions.EventName) == "CycleCompleted" and severityLevel >= 3\n| summarize failed = sum(itemCount)'
    column: 'failed'
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    name: 'tokenrefresh-no-cycle'
    displayName: 'TokenRefresh: no cycle in 15 minutes'
    description: 'No refresh cycle completed in 15 minutes: the Function app is stopped, failing to start, or its timer does not fire. Etsy tokens live one hour.'
    severity: 1
    frequency: 'PT5M'
    window: 'PT15M'
    query: 'traces\n${role}| where tostring(customDimensions.EventName) == "CycleCompleted"\n| summarize n = sum(itemCount)\n| extend cycles = iff(isnull(n), 0, n)'
    column: 'cycles'
    operator: 'LessThan'
    threshold: 1
  }
  {
    name: 'tokenrefresh-reauth-rising'
    displayName: 'TokenRefresh: re-authorisations rising'
    description: 'More accounts need their user to reconnect than an hour ago on one platform (tokenrefresh.accounts.needs_reauth): a revoked app, a changed secret or a platform incident.'
    severity: 2
    frequency: 'PT15M'
    window: 'PT2H'
    query: 'let metric = customMetrics\n${role}| where name == "tokenrefresh.accounts.needs_reauth"\n| extend platform = tostring(customDimensions.platform);\nmetric | where timestamp > ago(15m) | summarize now_ = max(value) by platform\n| join kind=leftouter (metric | where timestamp between (ago(75m) .. ago(60m)) | summarize before = max(value) by platform) on platform\n| extend rise = now_ - iff(isnull(before), 0.0, before)\n| summarize rise = max(rise)'
    column: 'rise'
    operator: 'GreaterThanOrEqual'
    threshold: reauthRise
  }
  {
    name: 'tokenrefresh-received-not-stored'
    displayName: 'TokenRefresh: a rotated token was received but not stored'
    description: 'A platform issued a new token pair that could not be written (a Critical event, ReceivedButNotStored): that user may have to reconnect. Look at the database at once.'
    severity: 0
    frequency: 'PT5M'
    window: 'PT5M'
    query: 'traces\n${role}| where severityLevel == 4 or tostring(customDimensions.EventName) == "ReceivedButNotStored"\n| summarize critical = sum(itemCount)'
    column: 'critical'
    operator: 'GreaterThan'
    threshold: 0
  }
]

resource alerts 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [for rule in rules: {
  name: rule.name
  location: location
  properties: {
    displayName: rule.displayName
    description: rule.description
    severity: rule.severity
    enabled: true
    evaluationFrequency: rule.frequency
    windowSize: rule.window
    scopes: [
      appInsights.id
    ]
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Total'
          metricMeasureColumn: rule.column
          operator: rule.operator
          threshold: rule.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroupId
      ]
    }
  }
}]

output ruleNames array = [for rule in rules: rule.name]
