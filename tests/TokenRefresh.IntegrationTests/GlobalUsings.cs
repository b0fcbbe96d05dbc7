// The service's folders, for the tests of every part of it.
global using TokenRefresh.OAuth;
global using TokenRefresh.Persistence;
global using TokenRefresh.Platforms;
global using TokenRefresh.Platforms.Etsy;
global using TokenRefresh.Platforms.Shopify;
global using TokenRefresh.Scheduling;
global using TokenRefresh.Settings;
global using TokenRefresh.Status;
